"""Documents the page server (``support.pages``) serves for the knowledge tests: an article
with navigation and footer boilerplate, an Atom feed, a JSON Feed, a long page of topics,
each by path as ``(body, content type)``."""

from __future__ import annotations

import json

ARTICLE = b"""<!doctype html><html><head><title>Goats of Limbo</title></head><body>
<nav><a href="/">Home</a> | <a href="/about">About us</a> | <a href="/shop">Shop now</a></nav>
<article><h1>Goats of Limbo</h1>
<p>The village of Limbo keeps forty goats on the hill above the mill. The oldest goat is
called Moss, and she is nineteen years old, which is very old for a goat.</p>
<p>Every spring the goats are brought down to the river to be washed before the market.
Bertha the villager has looked after them since she was a girl.</p>
</article>
<footer>Copyright 2026 Limbo Tourist Board. Cookie settings. Subscribe to our newsletter.</footer>
</body></html>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Limbo weather</title>
<entry><title>Storm on Thursday</title><link href="http://limbo.test/storm"/>
<updated>2026-11-30T10:00:00Z</updated><summary>Gales and &lt;b&gt;heavy rain&lt;/b&gt;.</summary>
</entry>
<entry><title>Sunny weekend</title><link href="http://limbo.test/sun"/>
<updated>2026-11-29T10:00:00Z</updated><summary>Clear skies.</summary></entry>
</feed>"""

JSON_FEED = json.dumps({
    "version": "https://jsonfeed.org/version/1.1", "title": "Limbo notices",
    "items": [{"id": "1", "title": "Well closed", "url": "http://limbo.test/well",
               "content_text": "The well is closed for repairs until Friday."},
              {"id": "2", "title": "Choir", "content_html": "<p>Choir practice <i>moved</i>.</p>"}],
}).encode()

TOPICS = ["goats", "cheese", "river", "mill", "weather", "market", "bridge", "church",
          "school", "harvest"]


def long_page() -> bytes:
    """About 2,000 words: ten sections of ten paragraphs, each paragraph about one topic;
    the only paragraph that gives the bridge's builder is in the eighth section."""
    sections = []
    for n, topic in enumerate(TOPICS):
        paragraphs = []
        for i in range(10):
            words = " ".join(f"{topic} word{i}{j}" for j in range(9))
            paragraphs.append(f"<p>Section {n} on the {topic}: {words}.</p>")
        if topic == "bridge":
            paragraphs[4] = ("<p>The stone bridge over the river was built by Ada Quarry in "
                             "1802, and it still carries the carts to the market.</p>")
        sections.append(f"<h2>The {topic}</h2>" + "".join(paragraphs))
    return ("<!doctype html><html><head><title>All about Limbo</title></head><body><article>"
            + "".join(sections) + "</article></body></html>").encode()


DOCUMENTS: dict[str, tuple[bytes, str]] = {
    "/article": (ARTICLE, "text/html; charset=utf-8"),
    "/atom": (ATOM, "application/atom+xml"),
    "/jsonfeed": (JSON_FEED, "application/feed+json"),
    "/long": (long_page(), "text/html; charset=utf-8"),
    "/not-a-feed.json": (b'{"hello": "world"}', "application/json"),
}
