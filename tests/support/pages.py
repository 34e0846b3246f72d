"""A page server for the fetcher's tests (``tests/knowledge/conftest.py`` starts it on
127.0.0.1, and a second one on 127.0.0.2 as "another host"): HTML, a 3 MiB body, a gzip bomb,
no content type, an image, a slow route, redirects, a 404, an ETag route, an RSS feed
(``/feed``), a page whose content the test changes (``/changing``). It records every request
it gets."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support.documents import DOCUMENTS

BIG = 3 << 20  # a 3 MiB body: over the 2 MiB default
BOMB = gzip.compress(bytes(8 << 20), compresslevel=9)  # ~8 KiB that inflates to 8 MiB
FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Limbo news</title>
<item><title>The goat escaped</title><link>http://limbo.test/goat</link>
<description>Moss the goat left the village at dawn.</description></item>
<item><title>Market day</title><link>http://limbo.test/market</link>
<description>Cheese and turnips.</description></item>
<item><title>Rain expected</title><link>http://limbo.test/rain</link>
<description>Bring a cloak.</description></item>
</channel></rss>"""  # three items, newest first
SLOW_BYTES, SLOW_GAP = 40, 0.1  # the slow route: 40 bytes, one each 0.1 s (~4 s in all)


@dataclass
class PageServer:
    """A running page server.

    Attributes:
        host: the address it listens on.
        port: its port.
        seen: ``(path, headers)`` of every request it received, in order.
        other: the base URL of the 127.0.0.2 server (redirects point there), or "".
        changing: ``(etag, text)`` that ``/changing`` serves (as text/plain, answering 304
            to an ``If-None-Match`` of that ETag); a test changes it to change the page.
    """

    host: str
    port: int
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    other: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    changing: tuple[str, str] = ('"v1"', "Version one of the page.")

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def requests_to(self, path: str) -> list[dict[str, str]]:
        """The headers (lowercased names) of each request for ``path``, in order."""
        return [headers for seen, headers in list(self.seen) if seen == path]


class Pages(BaseHTTPRequestHandler):
    """The routes (``GET`` only); ``self.server.pages`` is the ``PageServer``."""

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def reply(self, status: int, body: bytes = b"", content_type: str | None = "text/html",
              **headers: str) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        pages: PageServer = self.server.pages  # type: ignore[attr-defined]
        pages.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        path = self.path
        if path == "/page":
            self.reply(200, b"<html><body>hello</body></html>", "text/html; charset=UTF-8")
        elif path == "/big":
            self.reply(200, b"a" * BIG, "text/plain")
        elif path == "/big-unannounced":  # no Content-Length: only counting can stop it
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(BIG // 65536):
                self.wfile.write(b"a" * 65536)
        elif path == "/bomb":
            self.reply(200, BOMB, "text/plain", Content_Encoding="gzip")
        elif path == "/no-type":
            self.reply(200, b"hello", None)
        elif path == "/png":
            self.reply(200, b"\x89PNG\r\n", "image/png")
        elif path == "/slow":
            self.trickle(pages)
        elif path == "/redirect-relative":
            self.reply(302, Location="page")
        elif path == "/redirect-absolute":
            self.reply(301, Location=pages.url("/page"))
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            self.reply(302, Location=f"/chain/{left - 1}" if left > 1 else "/page")
        elif path == "/redirect-other-host":
            self.reply(302, Location=pages.other + "/page")
        elif path == "/etag":
            if self.headers.get("If-None-Match") == '"v1"':
                self.reply(304, content_type=None, ETag='"v1"')
            else:
                self.reply(200, b"<p>v1</p>", ETag='"v1"',
                           Last_Modified="Wed, 01 Jan 2025 00:00:00 GMT")
        elif path == "/feed":
            self.reply(200, FEED, "application/rss+xml")
        elif path in DOCUMENTS:
            self.reply(200, *DOCUMENTS[path])
        elif path == "/changing":
            etag, text = pages.changing
            if self.headers.get("If-None-Match") == etag:
                self.reply(304, content_type=None, ETag=etag)
            else:
                self.reply(200, text.encode(), "text/plain; charset=utf-8", ETag=etag)
        else:
            self.reply(404, b"not here")

    def trickle(self, pages: PageServer) -> None:
        """``SLOW_BYTES`` bytes, one each ``SLOW_GAP`` seconds, ending early when the test
        ends (or the client leaves)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(SLOW_BYTES))
        self.end_headers()
        for _ in range(SLOW_BYTES):
            if pages.stop.wait(SLOW_GAP):
                return
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                return


def serve(host: str) -> tuple[ThreadingHTTPServer, PageServer, threading.Thread]:
    """A page server on ``host`` and a free port, running in a thread (stop it with
    ``stop``)."""
    server = ThreadingHTTPServer((host, 0), Pages)
    server.daemon_threads = False  # server_close() joins the handler threads
    pages = PageServer(host=host, port=server.server_address[1])
    server.pages = pages  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name=f"pages-{host}",
                              daemon=True)
    thread.start()
    return server, pages, thread


def stop(server: ThreadingHTTPServer, pages: PageServer, thread: threading.Thread) -> None:
    """End the slow routes, stop serving, join every thread of the server."""
    pages.stop.set()
    server.shutdown()
    server.server_close()
    thread.join()
