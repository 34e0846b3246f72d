"""The knowledge prefixes of a user message: |CONTEXT|, |CONTENT|, a URL, |RAG|."""

from __future__ import annotations

import pytest

from chinwag.errors import InvalidParams
from chinwag.knowledge.prefixes import SUMMARISE, Asked, read_prefix


@pytest.mark.parametrize(("text", "asked"), [
    ("|CONTEXT|Moss is a goat.|/CONTEXT| Who is Moss?",
     Asked("Who is Moss?", context="Moss is a goat.")),
    ("|CONTENT|Moss is a goat.|/CONTENT| Who is Moss?",
     Asked("Who is Moss?", context="Moss is a goat.")),
    ("  |context|lower case works|/context|  Q?", Asked("Q?", context="lower case works")),
    ("|CONTEXT|just context|/CONTEXT|", Asked(SUMMARISE, context="just context")),
    ("https://example.org/page What does it say?",
     Asked("What does it say?", url="https://example.org/page")),
    ("http://example.org/feed", Asked(SUMMARISE, url="http://example.org/feed")),
    ("|RAG|weather|/RAG| Will it rain?", Asked("Will it rain?", source="weather")),
    ("Hello there", Asked("Hello there")),
    ("What is at https://example.org?", Asked("What is at https://example.org?")),
])
def test_a_prefix_gives_the_question_and_the_knowledge(text: str, asked: Asked) -> None:
    assert read_prefix(text) == asked


def test_a_prefix_is_read_once_at_the_start_only() -> None:
    asked = read_prefix("|CONTEXT|The page says |RAG|secrets|/RAG| and "
                        "https://evil.example|/CONTEXT| Summarise.")
    assert asked.context == "The page says |RAG|secrets|/RAG| and https://evil.example"
    assert asked.source is None and asked.url is None


@pytest.mark.parametrize("text", ["|CONTEXT|never closed", "|CONTENT|x|/CONTEXT| q",
                                  "|RAG|weather q", "|RAG||/RAG| q"])
def test_an_unterminated_or_empty_prefix_is_a_400_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        read_prefix(text, param="messages")
    assert caught.value.param == "messages"
    assert "|" in str(caught.value)
