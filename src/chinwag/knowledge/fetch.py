"""The one safe fetcher: every page or feed chinwag reads comes through ``fetch``.

The rules (issue 14), and where each is enforced:

- a URL is http or https, has a host, no userinfo, no backslash and no control character
  (tab, CR, LF, ...) (``check_url``);
- the host is resolved once (``FetchPolicy.resolver``) and every address it resolves to must
  be global: not loopback, private, link-local, shared (CGNAT, 100.64.0.0/10), multicast or
  unspecified, and an IPv4 address carried inside an IPv6 one (mapped, compatible, 6to4,
  Teredo, NAT64) is judged as that IPv4 address, unless a range of
  ``FetchPolicy.allow_private`` holds it (``is_allowed_address``); the connection then goes
  to the address that was checked, with the real name in ``Host`` and in TLS's SNI and
  certificate check, so a second DNS answer (rebinding) cannot change where it goes;
- redirects are followed by hand, at most ``max_redirects``, each hop checked the same way;
- at most ``max_bytes`` of body, counted after decompression while streaming (and refused at
  once when ``Content-Length`` says more); one content encoding at most, gzip or deflate;
- ``connect_timeout`` to connect, ``total_timeout`` for everything, redirects and a body
  trickled a byte at a time included (a timer cuts the socket at the deadline);
- only HTML, XHTML, RSS, Atom, XML, JSON Feed and plain text (``ALLOWED_TYPES``).

Every refusal is a ``FetchError`` whose ``code`` says why. ``fetch`` is synchronous: async
callers run it in a thread.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from chinwag.errors import FetchError

if TYPE_CHECKING:
    from chinwag.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

ALLOWED_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
    "application/xml", "text/xml", "application/feed+json", "application/json", "text/plain",
})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
ENCODINGS = frozenset({"gzip", "deflate", "identity"})  # one at most: each ~1000:1 at worst
SHARED_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598, CGNAT
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 2.5.5.1 (deprecated form)


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host`` (``socket.getaddrinfo``).

    Returns:
        IP address strings, each once, in the resolver's order.

    Raises:
        OSError: the name does not resolve (``socket.gaierror``).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class FetchPolicy:
    """What ``fetch`` may reach and how much it may take.

    Attributes:
        allow_private: ranges that may be reached although not global (an intranet, or
            ``127.0.0.1/32`` in tests).
        max_bytes: most body bytes, after decompression.
        connect_timeout: seconds to open a connection.
        total_timeout: seconds for the whole fetch, redirects and body included.
        max_redirects: most redirects followed.
        resolver: ``(host, port) -> IP address strings``; resolves every name, once per hop.
        transport: replaces the network (tests: ``httpx.MockTransport``); None, real HTTP.
    """

    allow_private: tuple[IPNetwork, ...] = ()
    max_bytes: int = 2 << 20
    connect_timeout: float = 5.0
    total_timeout: float = 15.0
    max_redirects: int = 5
    resolver: Resolver = system_resolver
    transport: httpx.BaseTransport | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        """The policy of ``fetch_allow_private`` and ``fetch_max_bytes``; the rest defaults."""
        return cls(allow_private=tuple(ipaddress.ip_network(c, strict=False)
                                       for c in settings.fetch_allow_private),
                   max_bytes=int(settings.fetch_max_bytes))


@dataclass(frozen=True)
class Fetched:
    """A page or feed as fetched.

    Attributes:
        url: the final URL, after redirects.
        status: 200-299, or 304 to a conditional request (then ``body`` is empty).
        content_type: the media type, lowercased, without parameters ("" for a 304).
        charset: the ``charset`` parameter lowercased, or None.
        body: the decompressed body, at most ``max_bytes`` bytes.
        etag: the ``ETag`` header, for the next conditional fetch, or None.
        last_modified: the ``Last-Modified`` header, as sent, or None.
        fetched_at: when the answer came, unix seconds.
    """

    url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    etag: str | None
    last_modified: str | None
    fetched_at: float


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: mapped (``::ffff:a.b.c.d``), compatible
    (``::a.b.c.d``), 6to4 (``2002::/16``), Teredo (server and client) and NAT64
    (``64:ff9b::/96``, RFC 6052). Empty for an IPv4 address or a plain IPv6 one."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    nat64 = any(address in net for net in NAT64)
    compatible = address in IPV4_COMPATIBLE and int(address) > 1  # not :: nor ::1
    if nat64 or compatible:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _is_public(address: IPAddress) -> bool:
    """Global, not shared (CGNAT), not multicast (Python's ``is_global`` keeps multicast)."""
    if address.is_multicast or not address.is_global:
        return False
    return not (isinstance(address, ipaddress.IPv4Address) and address in SHARED_SPACE)


def is_allowed_address(address: str, allow_private: tuple[IPNetwork, ...] = ()) -> bool:
    """Whether ``fetch`` may connect to ``address``: it, or an IPv4 address it carries, lies
    in one of ``allow_private``; else it and every IPv4 address it carries are public (see
    ``_is_public``).

    Args:
        address: an IPv4 or IPv6 address string (an IPv6 zone ``%eth0`` is allowed).

    Returns:
        True when allowed; False for anything else, an unparsable string included.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    forms: list[IPAddress] = [ip, *embedded_ipv4(ip)]
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        forms[0] = ipaddress.IPv6Address(address.split("%", 1)[0])
    if any(form in net for form in forms for net in allow_private):
        return True
    return all(_is_public(form) for form in forms)


def check_url(url: str) -> httpx.URL:
    """Parse ``url`` and apply the URL rules of the module docstring.

    Raises:
        FetchError: code ``bad_url``, saying which rule.
    """
    def bad(why: str) -> FetchError:
        return FetchError(f"refused URL {url!r}: {why}", code="bad_url", url=url)

    if "\\" in url or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise bad("it holds a backslash or a control character (tab, newline, ...)")
    try:
        parsed = httpx.URL(url)
        netloc = urlsplit(url).netloc
    except (httpx.InvalidURL, ValueError) as e:
        raise bad(str(e)) from None
    if parsed.scheme not in ("http", "https"):
        raise bad("only http and https are fetched")
    if "@" in netloc or parsed.userinfo:
        raise bad("a user name or password in the URL is not allowed")
    host = parsed.raw_host.decode("ascii")
    if not host or "%" in host:
        raise bad("no host, or a host that is not a name or an address")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise bad(f"port {parsed.port} is out of range")
    return parsed


def resolve_checked(url: httpx.URL, policy: FetchPolicy) -> str:
    """The address to connect to for ``url``: its host resolved once with ``policy.resolver``
    (an IP literal as itself), every address allowed by ``is_allowed_address``.

    Returns:
        The first address the resolver gave.

    Raises:
        FetchError: ``network_error`` when the name does not resolve; ``blocked_address``
            when any address it resolves to is not allowed (naming that address).
    """
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = list(policy.resolver(host, port))
        except OSError as e:
            raise FetchError(f"cannot resolve {host}: {e}", code="network_error",
                             url=str(url)) from None
    if not addresses:
        raise FetchError(f"{host} resolves to no address", code="network_error", url=str(url))
    for address in addresses:
        if not is_allowed_address(address, policy.allow_private):
            raise FetchError(f"refused {url}: {host} resolves to {address}, which is not a "
                             "global address (fetch_allow_private opens ranges)",
                             code="blocked_address", url=str(url))
    return addresses[0]


class _Deadline:
    """``total_timeout`` as a point on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.cut = False  # set when ``_cut_at`` shut a socket down

    def passed(self) -> bool:
        """Whether the deadline has come (or a socket was cut at it)."""
        return self.cut or self.remaining() == 0

    def remaining(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self.at - time.monotonic())


@contextmanager
def _cut_at(deadline: _Deadline, response: httpx.Response) -> Iterator[None]:
    """Shut the response's socket down at the deadline, so that a read blocked on a server
    that stalls or trickles returns then (a per-read timeout alone would not bound the
    whole body). Without a socket (a mock transport) it does nothing."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if not isinstance(sock, socket.socket):
        yield
        return
    finished = threading.Event()
    lock = threading.Lock()

    def cut() -> None:
        with lock:
            if not finished.is_set():
                deadline.cut = True
                with suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # not SSLSocket's: no state

    timer = threading.Timer(deadline.remaining(), cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            finished.set()
        timer.cancel()


def _request_for(client: httpx.Client, url: httpx.URL, address: str, policy: FetchPolicy,
                 deadline: _Deadline, headers: dict[str, str]) -> httpx.Request:
    """A GET of ``url`` sent to ``address`` (the checked IP), with the real host in ``Host``
    and, for https, in SNI and the certificate check (httpcore's ``sni_hostname``)."""
    host = url.raw_host.decode("ascii")
    shown = f"[{host}]" if ":" in host else host
    left = deadline.remaining()
    timeout = httpx.Timeout(left, connect=min(policy.connect_timeout, left))
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return client.build_request(
        "GET", url.copy_with(host=address.split("%", 1)[0]), timeout=timeout,
        headers={**headers, "Host": shown + (f":{url.port}" if url.port else "")},
        extensions=extensions)


def _read_body(response: httpx.Response, url: str, policy: FetchPolicy,
               deadline: _Deadline) -> bytes:
    """The decompressed body, refused past ``policy.max_bytes`` or the deadline.

    Raises:
        FetchError: ``too_large``; ``timeout`` (checked after each chunk, for transports
            without a socket to cut); ``unsupported_content_type`` for an encoding other than
            one of gzip or deflate; ``parse_error`` for a body that does not decompress.
    """
    encodings = [e.strip().lower() for e in response.headers.get("content-encoding", "")
                 .split(",") if e.strip()]
    if len(encodings) > 1 or not set(encodings) <= ENCODINGS:
        raise FetchError(f"{url}: content encoding {', '.join(encodings)} is not supported",
                         code="unsupported_content_type", url=url)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(f"{url}: {declared} bytes is over the {policy.max_bytes}-byte limit",
                         code="too_large", url=url)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > policy.max_bytes:
                raise FetchError(f"{url}: the body is over the {policy.max_bytes}-byte limit "
                                 "(after decompression)", code="too_large", url=url)
            chunks.append(chunk)
            if deadline.passed():
                raise _timeout(url, policy)
    except httpx.DecodingError as e:
        raise FetchError(f"{url}: the body does not decompress: {e}", code="parse_error",
                         url=url) from None
    return b"".join(chunks)


def _answer(response: httpx.Response, url: str, policy: FetchPolicy, deadline: _Deadline,
            conditional: bool) -> Fetched:
    """The ``Fetched`` of a final (non-redirect) answer.

    Raises:
        FetchError: ``http_status``, ``unsupported_content_type``, or as ``_read_body``.
    """
    status = response.status_code
    if not (200 <= status < 300 or (status == 304 and conditional)):
        raise FetchError(f"{url} answered {status}", code="http_status", url=url, status=status)
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if status != 304 and media not in ALLOWED_TYPES:
        raise FetchError(f"{url}: content type {media or '(none)'} is not one chinwag reads",
                         code="unsupported_content_type", url=url)
    body = b"" if status == 304 else _read_body(response, url, policy, deadline)
    charset = response.charset_encoding
    return Fetched(url=url, status=status, content_type=media if status != 304 else "",
                   charset=charset.lower() if charset else None, body=body,
                   etag=response.headers.get("etag"),
                   last_modified=response.headers.get("last-modified"), fetched_at=time.time())


def _hop(client: httpx.Client, url: httpx.URL, policy: FetchPolicy, deadline: _Deadline,
         headers: dict[str, str]) -> Fetched | httpx.URL:
    """One request: the final answer, or the next URL to go to (a checked redirect target).

    Raises:
        FetchError: any code but ``too_many_redirects``.
    """
    address = resolve_checked(url, policy)
    request = _request_for(client, url, address, policy, deadline, headers)
    where = str(url)
    try:
        response = client.send(request, stream=True)
        try:
            with _cut_at(deadline, response):
                if response.status_code in REDIRECTS and "location" in response.headers:
                    return check_url(str(url.join(_location(response, where))))
                conditional = "If-None-Match" in headers or "If-Modified-Since" in headers
                return _answer(response, where, policy, deadline, conditional)
        finally:
            response.close()
    except (httpx.TimeoutException, httpx.TransportError) as e:
        if isinstance(e, httpx.TimeoutException) or deadline.passed():
            raise _timeout(where, policy) from None
        raise FetchError(f"{where}: {type(e).__name__}: {e}", code="network_error",
                         url=where) from None


def _timeout(url: str, policy: FetchPolicy) -> FetchError:
    """The ``timeout`` refusal of ``url``."""
    return FetchError(f"{url}: no complete answer within {policy.total_timeout} s (connect "
                      f"{policy.connect_timeout} s)", code="timeout", url=url)


def _location(response: httpx.Response, url: str) -> str:
    """The raw ``Location`` of a redirect, refused when it holds what URLs may not.

    Raises:
        FetchError: ``bad_url``.
    """
    location = response.headers["location"]
    if "\\" in location or any(ord(c) < 0x20 or ord(c) == 0x7F for c in location):
        raise FetchError(f"{url} redirects to a URL with a backslash or control character",
                         code="bad_url", url=url)
    return location


def fetch(url: str, policy: FetchPolicy, *, etag: str | None = None,
          last_modified: str | None = None) -> Fetched:
    """Fetch one page or feed under ``policy`` (the rules of the module docstring).

    Args:
        url: an absolute http(s) URL.
        policy: what may be reached, how much and how long.
        etag: the ``ETag`` of a copy already held, sent as ``If-None-Match``.
        last_modified: its ``Last-Modified``, sent as ``If-Modified-Since``.

    Returns:
        The final answer: 2xx, or 304 (empty body) when ``etag``/``last_modified`` were sent.

    Raises:
        FetchError: ``bad_url``, ``blocked_address``, ``network_error``, ``timeout``,
            ``too_large``, ``too_many_redirects`` (more than ``max_redirects`` redirects;
            a code of its own rather than ``http_status``, since no status was wrong),
            ``http_status``, ``unsupported_content_type`` or ``parse_error``.
    """
    from chinwag import __version__  # here: chinwag/__init__ sets it after its imports

    deadline = _Deadline(policy.total_timeout)
    headers = {"User-Agent": f"chinwag/{__version__}", "Accept-Encoding": "gzip, deflate",
               "Accept": ", ".join(sorted(ALLOWED_TYPES))}
    if etag is not None:
        headers["If-None-Match"] = etag
    if last_modified is not None:
        headers["If-Modified-Since"] = last_modified
    transport = policy.transport or httpx.HTTPTransport(
        limits=httpx.Limits(max_keepalive_connections=0))  # no connection reused across hosts
    client = httpx.Client(transport=transport, trust_env=False, follow_redirects=False)
    try:
        current = check_url(url)
        for _ in range(policy.max_redirects + 1):
            if deadline.passed():
                raise _timeout(str(current), policy)
            outcome = _hop(client, current, policy, deadline, headers)
            if isinstance(outcome, Fetched):
                return outcome
            current = outcome
        raise FetchError(f"{url}: more than {policy.max_redirects} redirects",
                         code="too_many_redirects", url=str(current))
    finally:
        if policy.transport is None:
            client.close()
