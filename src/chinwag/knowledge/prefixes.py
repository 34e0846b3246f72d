"""The knowledge prefixes a user message may start with.

The organisation chat services chinwag replaces read these at the start of a prompt:

- ``|CONTEXT|text|/CONTEXT| question`` (also ``|CONTENT|...|/CONTENT|``): literal context;
- ``https://... question`` (or ``http://``): fetch that page or feed; a URL alone means
  ``Summarise this.``;
- ``|RAG|name|/RAG| question``: a configured source, by name.

Prefixes are read from the user's own text only, once, at the start of the message: never
from fetched content (a page that says ``|RAG|secrets|/RAG|`` is just text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chinwag.errors import InvalidParams

SUMMARISE = "Summarise this."
"""The question when a message is a URL or a context alone."""

_OPEN = re.compile(r"\|(CONTEXT|CONTENT|RAG)\|", re.IGNORECASE)
_URL = re.compile(r"https?://\S+", re.IGNORECASE)


@dataclass(frozen=True)
class Asked:
    """A user message with its prefix read.

    Attributes:
        question: the message without its prefix (``SUMMARISE`` when nothing is left).
        context: the literal text of ``|CONTEXT|...|/CONTEXT|``, or None.
        url: the URL the message starts with, or None.
        source: the source named by ``|RAG|name|/RAG|``, or None.
    """

    question: str
    context: str | None = None
    url: str | None = None
    source: str | None = None

    @property
    def prefixed(self) -> bool:
        """Whether the message had a prefix."""
        return self.context is not None or self.url is not None or self.source is not None


def read_prefix(text: str, *, param: str = "prompt") -> Asked:
    """Read the prefix of one user message (see the module docstring).

    Args:
        text: the message as the user wrote it.
        param: the request field it came from, named in errors (``prompt``, ``messages``).

    Raises:
        InvalidParams: a ``|CONTEXT|``, ``|CONTENT|`` or ``|RAG|`` that is never closed, or a
            ``|RAG||/RAG|`` with no name (HTTP 400).
    """
    body = text.lstrip()
    opened = _OPEN.match(body)
    if opened:
        tag = opened.group(1).upper()
        close = re.compile(re.escape(f"|/{tag}|"), re.IGNORECASE)
        end = close.search(body, opened.end())
        if end is None:
            raise InvalidParams(f"|{tag}| is not closed: end the {tag.lower()} with |/{tag}| "
                                "before the question", param=param)
        inside = body[opened.end():end.start()]
        question = body[end.end():].strip() or SUMMARISE
        if tag == "RAG":
            name = inside.strip().strip("|").strip()
            if not name:
                raise InvalidParams("|RAG||/RAG| names no source: write |RAG|name|/RAG|",
                                    param=param)
            return Asked(question, source=name)
        return Asked(question, context=inside.strip())
    url = _URL.match(body)
    if url:
        return Asked(body[url.end():].strip() or SUMMARISE, url=url.group(0))
    return Asked(text)
