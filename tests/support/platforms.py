"""A fake platform API (Slack's Web API, Discord's HTTP API) on 127.0.0.1 for the hook tests:
it records every call and answers from its routes, else from a script, then with a default
answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    """One request the fake API received (header names lower-case)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeAPI:
    """A running fake API.

    Attributes:
        url: its base URL.
        calls: every request received, in order.
        script: answers given to the next requests, first first: ``(status, headers, body)``.
        default: the answer once the script is used up.
        routes: answers made by a function of the call, by path (without the query); calls
            to these paths take nothing from the script.
    """

    url: str = ""
    calls: list[Call] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    default: tuple[int, dict[str, str], Any] = (200, {}, {"ok": True})
    routes: dict[str, Callable[[Call], tuple[int, dict[str, str], Any]]] = field(
        default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, path: str) -> list[Call]:
        """The calls made to ``path``."""
        with self.lock:
            return [call for call in self.calls if call.path == path]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _any(self) -> None:
        api: FakeAPI = self.server.api  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        call = Call(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                    body)
        with api.lock:
            api.calls.append(call)
            route = api.routes.get(self.path.split("?", 1)[0])
            status, headers, answer = (route(call) if route is not None
                                       else api.script.pop(0) if api.script else api.default)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any


@contextmanager
def fake_api(default: tuple[int, dict[str, str], Any] = (200, {}, {"ok": True})
             ) -> Iterator[FakeAPI]:
    """A fake API serving on 127.0.0.1 and a free port while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    api = FakeAPI(url=f"http://127.0.0.1:{server.server_address[1]}", default=default)
    server.api = api  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
