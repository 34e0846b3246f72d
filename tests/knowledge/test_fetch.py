"""The safe fetcher against a page server on 127.0.0.1 (``conftest.py``): each refusal code,
each size and time limit with and without it, redirects, and address checks. Traffic goes to
loopback only: other ranges are tested through an injected resolver and a mock transport
that records (and would answer) any request instead of sending it."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from chinwag import __version__
from chinwag.errors import FetchError
from chinwag.knowledge.fetch import Fetched, FetchPolicy, fetch, is_allowed_address
from chinwag.settings import Settings
from support.pages import BIG, SLOW_BYTES, PageServer

LOCAL = (ipaddress.ip_network("127.0.0.1/32"),)


def local(**changes: object) -> FetchPolicy:
    """A policy that may reach the page server on 127.0.0.1 (and nothing else private)."""
    return FetchPolicy(allow_private=LOCAL, **changes)  # type: ignore[arg-type]


def refusal(url: str, policy: FetchPolicy) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(url, policy)
    return caught.value


# -- what is fetched ------------------------------------------------------------------------------

def test_html_page_is_fetched_with_its_type_charset_and_user_agent(pages: PageServer) -> None:
    got = fetch(pages.url("/page"), local())
    assert (got.status, got.content_type, got.charset) == (200, "text/html", "utf-8")
    assert got.body == b"<html><body>hello</body></html>"
    assert got.url == pages.url("/page")
    assert abs(got.fetched_at - time.time()) < 60
    assert pages.seen[0][1]["user-agent"] == f"chinwag/{__version__}"


def test_etag_is_sent_back_and_a_304_is_returned_with_an_empty_body(pages: PageServer) -> None:
    first = fetch(pages.url("/etag"), local())
    assert (first.etag, first.last_modified) == ('"v1"', "Wed, 01 Jan 2025 00:00:00 GMT")
    again = fetch(pages.url("/etag"), local(), etag=first.etag,
                  last_modified=first.last_modified)
    assert (again.status, again.body) == (304, b"")
    headers = pages.seen[1][1]
    assert headers["if-none-match"] == '"v1"'
    assert headers["if-modified-since"] == first.last_modified


def test_connection_goes_to_the_checked_address_with_the_real_host(pages: PageServer) -> None:
    asked: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"]

    got = fetch(f"http://pages.test:{pages.port}/page", local(resolver=resolver))
    assert got.status == 200 and got.url == f"http://pages.test:{pages.port}/page"
    assert asked == [("pages.test", pages.port)]  # resolved once
    assert pages.seen[0][1]["host"] == f"pages.test:{pages.port}"


def test_policy_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHINWAG_FETCH_ALLOW_PRIVATE", "127.0.0.1/32, 10.1.2.3/16")
    monkeypatch.setenv("CHINWAG_FETCH_MAX_BYTES", "4MiB")
    policy = FetchPolicy.from_settings(Settings())
    assert policy.allow_private == (ipaddress.ip_network("127.0.0.1/32"),
                                    ipaddress.ip_network("10.1.0.0/16"))
    assert policy.max_bytes == 4 << 20
    assert FetchPolicy.from_settings(Settings()).total_timeout == 15.0


# -- redirects -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/redirect-relative", "/redirect-absolute", "/chain/5"])
def test_redirects_are_followed_to_the_final_url(pages: PageServer, path: str) -> None:
    got = fetch(pages.url(path), local())
    assert got.url == pages.url("/page") and got.body.startswith(b"<html>")


def test_more_than_max_redirects_is_too_many_redirects(pages: PageServer) -> None:
    assert refusal(pages.url("/chain/6"), local()).code == "too_many_redirects"
    assert fetch(pages.url("/chain/6"), local(max_redirects=6)).status == 200


def test_redirect_to_another_loopback_host_is_blocked_unsent(
        servers: tuple[PageServer, PageServer]) -> None:
    pages, other = servers
    error = refusal(pages.url("/redirect-other-host"), local())
    assert error.code == "blocked_address" and "127.0.0.2" in str(error)
    assert [path for path, _ in pages.seen] == ["/redirect-other-host"]
    assert other.seen == []  # refused before connecting: no race to wait out


def test_url_naming_another_loopback_host_is_blocked_unsent(
        servers: tuple[PageServer, PageServer]) -> None:
    _, other = servers
    assert refusal(other.url("/page"), local()).code == "blocked_address"
    assert refusal(other.url("/page"), FetchPolicy()).code == "blocked_address"
    assert other.seen == []


def test_loopback_is_blocked_without_allow_private(pages: PageServer) -> None:
    assert refusal(pages.url("/page"), FetchPolicy()).code == "blocked_address"
    assert pages.seen == []


# -- size limits -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/big", "/big-unannounced"])
def test_body_over_max_bytes_is_too_large_and_fetched_under_a_higher_limit(
        pages: PageServer, path: str) -> None:
    assert refusal(pages.url(path), local()).code == "too_large"
    assert len(fetch(pages.url(path), local(max_bytes=4 << 20)).body) == BIG


def test_gzip_bomb_is_counted_after_decompression(pages: PageServer) -> None:
    assert refusal(pages.url("/bomb"), local()).code == "too_large"
    got = fetch(pages.url("/bomb"), local(max_bytes=9 << 20))
    assert got.body == bytes(8 << 20)


# -- time limits -----------------------------------------------------------------------------------

def test_trickled_body_times_out_at_total_timeout(pages: PageServer) -> None:
    started = time.monotonic()
    assert refusal(pages.url("/slow"), local(total_timeout=0.3)).code == "timeout"
    assert time.monotonic() - started < 3.0  # cut near the deadline, not at the body's end (4 s)


def test_trickled_body_is_fetched_within_a_longer_total_timeout(pages: PageServer) -> None:
    assert fetch(pages.url("/slow"), local(total_timeout=30.0)).body == b"x" * SLOW_BYTES


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: a new connection hangs in SYN_SENT (the
    kernel drops its SYN) until the caller gives up."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued: list[socket.socket] = []
        try:
            while True:  # until a connection no longer completes: the queue is then full
                client = socket.create_connection(("127.0.0.1", port), timeout=5)
                queued.append(client)
                probe = socket.socket()
                probe.settimeout(0.2)
                try:
                    probe.connect(("127.0.0.1", port))
                    queued.append(probe)
                except TimeoutError:
                    probe.close()
                    break
            yield port
        finally:
            for client in queued:
                client.close()


def test_connect_timeout_gives_up_on_a_host_that_never_answers(unanswered_port: int) -> None:
    started = time.monotonic()
    error = refusal(f"http://127.0.0.1:{unanswered_port}/",
                    local(connect_timeout=0.3, total_timeout=30.0))
    assert error.code == "timeout"
    assert time.monotonic() - started < 5  # the connect limit, not the 30 s one


def test_total_timeout_bounds_the_connect_too(unanswered_port: int) -> None:
    started = time.monotonic()
    error = refusal(f"http://127.0.0.1:{unanswered_port}/",
                    local(connect_timeout=30.0, total_timeout=0.3))
    assert error.code == "timeout" and time.monotonic() - started < 5


# -- refused answers -------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "code"), [
    ("/missing", "http_status"), ("/no-type", "unsupported_content_type"),
    ("/png", "unsupported_content_type")])
def test_refused_answers_say_why(pages: PageServer, path: str, code: str) -> None:
    error = refusal(pages.url(path), local())
    assert error.code == code and error.url == pages.url(path)
    if code == "http_status":
        assert error.status == 404


def test_connection_refused_is_a_network_error() -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert refusal(f"http://127.0.0.1:{port}/", local()).code == "network_error"


# -- URL syntax ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1/file", "file:///etc/passwd", "http://user:pw@127.0.0.1/",
    "http://user@127.0.0.1/", "http://127.0.0.1\\@other/", "http://127.0.0.1/a\tb",
    "http://127.0.0.1/a\nb", "http://127.0.0.1/a\r\nHost: x", "http:///nohost",
    "not a url"])
def test_bad_urls_are_refused_before_resolving(url: str) -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise AssertionError("a bad URL must not be resolved")

    assert refusal(url, FetchPolicy(resolver=resolver)).code == "bad_url"


# -- addresses, through an injected resolver and a recording transport -----------------------------

BLOCKED = ["10.0.0.1", "192.168.1.1", "172.16.0.1", "169.254.169.254", "100.64.0.1",
           "127.0.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::",
           "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1", "2002:a00:1::",
           "64:ff9b::a00:1", "2001:0:4136:e378:8000:63bf:f5ff:fffe"]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_global_addresses_are_blocked_before_any_connection(address: str) -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, text="must not get here")

    policy = FetchPolicy(resolver=lambda host, port: [address],
                         transport=httpx.MockTransport(record))
    assert refusal("http://pages.test/", policy).code == "blocked_address"
    assert sent == []


def test_one_blocked_address_among_several_blocks_the_name() -> None:
    policy = FetchPolicy(resolver=lambda host, port: ["93.184.216.34", "10.0.0.1"],
                         transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert refusal("http://pages.test/", policy).code == "blocked_address"


@pytest.mark.parametrize("address", BLOCKED)
def test_the_check_refuses_non_global_addresses(address: str) -> None:
    assert not is_allowed_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946",
                                     "::ffff:93.184.216.34"])
def test_the_check_accepts_global_addresses(address: str) -> None:
    assert is_allowed_address(address)


def test_allow_private_opens_only_its_ranges() -> None:
    intranet = (ipaddress.ip_network("10.1.0.0/16"),)
    assert is_allowed_address("10.1.2.3", intranet)
    assert is_allowed_address("::ffff:10.1.2.3", intranet)
    assert not is_allowed_address("10.2.0.1", intranet)
    assert not is_allowed_address("not an address", intranet)


def test_https_sends_the_real_name_for_sni_to_the_checked_address() -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, headers={"content-type": "application/rss+xml"}, text="<rss/>")

    policy = FetchPolicy(resolver=lambda host, port: ["93.184.216.34"],
                         transport=httpx.MockTransport(record))
    got = fetch("https://feeds.test/rss", policy)  # the mock answers: nothing is sent
    assert isinstance(got, Fetched) and got.content_type == "application/rss+xml"
    request = sent[0]
    assert request.url.host == "93.184.216.34" and request.headers["host"] == "feeds.test"
    assert request.extensions["sni_hostname"] == "feeds.test"
