"""What a fetched page or feed says, as text for a prompt.

- HTML and XHTML: the main text, without navigation, footers and other boilerplate, by
  trafilatura (``bare_extraction`` on the bytes ``fetch`` got; it never fetches anything
  itself), falling back to all of the page's text (``html2txt``) when it finds no main part.
- RSS and Atom (and XML that is one of them): feedparser, always on ``io.BytesIO`` of the
  fetched bytes (feedparser's documentation warns that a string may be taken for a file name
  or a URL and read).
- JSON Feed (https://jsonfeed.org/version/1.1): read with ``json``.
- Plain text: decoded with its charset (UTF-8 by default), as it is.

A feed becomes one line per item, newest first as the feed lists them: title, date, link and
summary, at most ``max_items`` items.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import feedparser
import lxml.html
import trafilatura

from chinwag.errors import FetchError
from chinwag.knowledge.fetch import Fetched

FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/xml",
                        "text/xml"})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
JSON_TYPES = frozenset({"application/feed+json", "application/json"})
DEFAULT_MAX_ITEMS = 10
SUMMARY_CHARS = 400  # of each feed item's summary


@dataclass(frozen=True)
class Document:
    """A page or feed as text.

    Attributes:
        url: where it came from (after redirects).
        kind: ``page`` (HTML, XHTML, plain text) or ``feed`` (RSS, Atom, JSON Feed).
        title: its title, or None when it has none.
        text: the main text (a page) or one item per paragraph (a feed).
        fetched_at: when it was fetched, unix seconds.
    """

    url: str
    kind: str
    title: str | None
    text: str
    fetched_at: float


def extract(fetched: Fetched, *, max_items: int = DEFAULT_MAX_ITEMS) -> Document:
    """The text of a fetched page or feed.

    Args:
        fetched: what ``fetch`` got (a 2xx answer with a body).
        max_items: most feed items kept.

    Raises:
        FetchError: ``parse_error`` when the body cannot be read as its type says (a feed
            with no items and no title, JSON that is not a JSON Feed, HTML with no text),
            ``unsupported_content_type`` for a type ``fetch`` should not have let through.
    """
    kind = fetched.content_type
    if kind in HTML_TYPES:
        title, text = _page(fetched)
        return Document(fetched.url, "page", title, text, fetched.fetched_at)
    if kind in FEED_TYPES:
        title, items = _xml_feed(fetched, max_items)
    elif kind in JSON_TYPES:
        title, items = _json_feed(fetched, max_items)
    elif kind == "text/plain":
        text = fetched.body.decode(fetched.charset or "utf-8", errors="replace").strip()
        if not text:
            raise _unreadable(fetched, "the text is empty")
        return Document(fetched.url, "page", None, text, fetched.fetched_at)
    else:
        raise FetchError(f"{fetched.url}: chinwag does not read {kind or 'untyped'} content",
                         code="unsupported_content_type", url=fetched.url)
    return Document(fetched.url, "feed", title, "\n\n".join(items), fetched.fetched_at)


def _unreadable(fetched: Fetched, why: str) -> FetchError:
    return FetchError(f"{fetched.url}: {why}", code="parse_error", url=fetched.url)


def _page(fetched: Fetched) -> tuple[str | None, str]:
    try:
        found = trafilatura.bare_extraction(fetched.body, url=fetched.url, with_metadata=True,
                                            include_comments=False)
        text = getattr(found, "text", None) or ""
        title = getattr(found, "title", None) or None
        if not text.strip():
            text = trafilatura.html2txt(fetched.body)
    except Exception as e:  # lxml and trafilatura raise many kinds on broken markup
        raise _unreadable(fetched, f"the page cannot be read: {e}") from None
    if not text.strip():
        raise _unreadable(fetched, "the page has no text")
    return title, text.strip()


def _plain(html: str) -> str:
    """The text of an HTML fragment (a feed item's summary)."""
    if "<" not in html:
        return " ".join(html.split())
    try:
        return " ".join(lxml.html.fromstring(f"<div>{html}</div>").text_content().split())
    except Exception:
        return " ".join(html.split())


def _item_line(title: str, when: str, link: str, summary: str) -> str:
    head = " ".join(p for p in (title.strip() or "(untitled)", f"({when})" if when else "") if p)
    summary = _plain(summary)
    if len(summary) > SUMMARY_CHARS:
        summary = summary[:SUMMARY_CHARS].rsplit(" ", 1)[0] + "..."
    return "\n".join(p for p in (f"- {head}", f"  {link}" if link else "",
                                 f"  {summary}" if summary else "") if p)


def _xml_feed(fetched: Fetched, max_items: int) -> tuple[str | None, list[str]]:
    parsed: Any = feedparser.parse(io.BytesIO(fetched.body),
                                   response_headers={"content-type": fetched.content_type})
    title = _plain(parsed.feed.get("title", "")) or None
    if not parsed.entries and title is None:
        why = parsed.get("bozo_exception") or "no feed items"
        raise _unreadable(fetched, f"not an RSS or Atom feed: {why}")
    items = [_item_line(_plain(e.get("title", "")), e.get("published") or e.get("updated", ""),
                        e.get("link", ""), e.get("summary", ""))
             for e in parsed.entries[:max_items]]
    return title, items


def _json_feed(fetched: Fetched, max_items: int) -> tuple[str | None, list[str]]:
    try:
        data = json.loads(fetched.body.decode(fetched.charset or "utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _unreadable(fetched, f"not valid JSON: {e}") from None
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith(
            "https://jsonfeed.org/version/") or not isinstance(data.get("items"), list):
        raise _unreadable(fetched, "JSON that is not a JSON Feed (https://jsonfeed.org)")
    items = [_item_line(str(item.get("title", "")), str(item.get("date_published", "")),
                        str(item.get("url", "")),
                        str(item.get("summary") or item.get("content_text")
                            or item.get("content_html") or ""))
             for item in data["items"][:max_items] if isinstance(item, dict)]
    title = data.get("title")
    return (title if isinstance(title, str) else None), items
