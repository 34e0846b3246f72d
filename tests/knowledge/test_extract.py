"""Extraction of fetched pages and feeds: trafilatura's main text, feedparser on the bytes,
JSON Feed, plain text; each fetched for real from the local page server."""

from __future__ import annotations

import ipaddress

import pytest

from chinwag.errors import FetchError
from chinwag.knowledge.extract import extract
from chinwag.knowledge.fetch import Fetched, FetchPolicy, fetch
from support.pages import PageServer

LOCAL = FetchPolicy(allow_private=(ipaddress.ip_network("127.0.0.1/32"),))


def test_an_article_keeps_its_main_text_without_navigation_or_footer(pages: PageServer
                                                                      ) -> None:
    document = extract(fetch(pages.url("/article"), LOCAL))
    assert document.kind == "page" and document.title == "Goats of Limbo"
    assert "The oldest goat is called Moss" in document.text
    assert "Shop now" not in document.text and "Cookie settings" not in document.text


@pytest.mark.parametrize(("path", "title", "first", "missing"), [
    ("/feed", "Limbo news", "The goat escaped", None),
    ("/atom", "Limbo weather", "Storm on Thursday", "<b>"),
    ("/jsonfeed", "Limbo notices", "The well is closed for repairs", "<i>"),
])
def test_feeds_become_one_item_each(pages: PageServer, path: str, title: str, first: str,
                                    missing: str | None) -> None:
    document = extract(fetch(pages.url(path), LOCAL))
    assert document.kind == "feed" and document.title == title
    assert first in document.text.split("\n\n")[0]
    if missing:
        assert missing not in document.text


def test_max_items_keeps_the_first_items(pages: PageServer) -> None:
    document = extract(fetch(pages.url("/feed"), LOCAL), max_items=2)
    assert "Market day" in document.text and "Rain expected" not in document.text


def test_json_that_is_not_a_feed_is_a_parse_error(pages: PageServer) -> None:
    with pytest.raises(FetchError) as caught:
        extract(fetch(pages.url("/not-a-feed.json"), LOCAL))
    assert caught.value.code == "parse_error"


def fetched(body: bytes, content_type: str) -> Fetched:
    return Fetched("http://x.test/", 200, content_type, None, body, None, None, 0.0)


@pytest.mark.parametrize(("body", "content_type"), [
    (b"<rss><channel></channel></rss>", "application/rss+xml"),  # no title, no items
    (b"not xml at all", "application/xml"),
    (b"   ", "text/plain"),
    (b"<html><body></body></html>", "text/html"),
])
def test_a_body_that_says_nothing_is_a_parse_error(body: bytes, content_type: str) -> None:
    with pytest.raises(FetchError) as caught:
        extract(fetched(body, content_type))
    assert caught.value.code == "parse_error"


def test_a_feed_string_is_never_read_as_a_path_or_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.xml"
    secret.write_text("<rss><channel><title>SECRET</title></channel></rss>")
    with pytest.raises(FetchError):
        extract(fetched(str(secret).encode(), "application/xml"))


def test_plain_text_is_kept_as_it_is_in_its_charset() -> None:
    body = "Crème brûlée".encode("latin-1")
    document = extract(Fetched("http://x.test/", 200, "text/plain", "latin-1", body, None,
                               None, 0.0))
    assert document.text == "Crème brûlée"
