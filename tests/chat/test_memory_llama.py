"""Memory on the real embedded model with a small context window (n_ctx 512)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chinwag.backends.llamacpp import LlamaCppBackend
from chinwag.chat import Chatbot
from chinwag.chat.memory import MemoryPolicy
from chinwag.chat.persona import get_persona
from chinwag.store import Store

pytestmark = pytest.mark.slow

SMALL_TALK = ["Tell me about the village.", "What is the weather like today?",
              "Do you have a goat?", "Where is the mill?", "What do you eat for supper?",
              "Is the river far from here?", "Who is the oldest person in Limbo?"]


@pytest.fixture(scope="module")
def small(model_path: Path) -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend(model_path, n_ctx=512, n_threads=2)
    yield backend
    backend.close()


def test_forty_turns_in_512_tokens_with_a_summary_that_keeps_the_name(
        small: LlamaCppBackend, tmp_path: Path) -> None:
    villager = get_persona("villager").model_copy(update={"memory": MemoryPolicy(
        policy="summary", window=8, summary_batch=4)})
    store = Store(tmp_path / "chat.db")
    bot = Chatbot(small, villager, store=store, temperature=0, max_tokens=24)
    summary_when_it_left: str | None = None
    for turn in range(40):
        text = "Hello! My name is Zorblax." if turn == 0 else SMALL_TALK[turn % len(SMALL_TALK)]
        reply = "".join(bot.send(text))
        assert bot.last is not None and bot.last.usage.prompt_tokens < 512
        assert isinstance(reply, str)
        if bot.summary_due():
            bot.update_summary()
            if summary_when_it_left is None:
                summary_when_it_left = bot.summary
    assert summary_when_it_left is not None
    assert "Zorblax" in summary_when_it_left, summary_when_it_left
    print("first summary:", summary_when_it_left, "\nlast summary:", bot.summary, sep="\n")
    stored = store.messages(bot.conversation_id or "")
    assert len(stored) == 80 and all(m.complete for m in stored)
    assert [m.tokens for m in stored] == [small.count_tokens(m.content) for m in stored]
    conversation = store.get_conversation(bot.conversation_id or "")
    assert conversation.summary == bot.summary and conversation.summarized_through > 0


def test_window_sends_the_last_n_messages_on_the_real_model(small: LlamaCppBackend) -> None:
    villager = get_persona("villager").model_copy(update={"memory": MemoryPolicy(window=4)})
    bot = Chatbot(small, villager, temperature=0, max_tokens=8)
    for text in ["First, the well.", "Second, the barn.", "Third, the mill.", "Fourth, the inn."]:
        "".join(bot.send(text))
    prompt, left_out = bot.prompt_for("Fifth?")
    assert left_out == 4
    assert "First, the well." not in prompt.text and "Second, the barn." not in prompt.text
    assert "Third, the mill." in prompt.text and "Fourth, the inn." in prompt.text
