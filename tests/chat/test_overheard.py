"""Overheard lines inside a conversation (``system`` messages) joined to the next user message,
and turns taken back (``Chatbot.take_back``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from chinwag.backends.scripted import ScriptedBackend
from chinwag.chat.chatbot import Chatbot
from chinwag.chat.memory import Heard, fold_overheard
from chinwag.chat.persona import Persona
from chinwag.store import Store


@dataclass(frozen=True)
class M:
    role: str
    content: str
    seq: int
    tokens: int | None = None


def test_overheard_lines_join_the_next_user_message() -> None:
    history = [M("system", "Bob: hi", 0), M("system", "Cy: yo", 1), M("user", "hello", 2),
               M("assistant", "Hi.", 3), M("system", "Bob: bye", 4)]
    folded, pending = fold_overheard(history)
    assert folded == [Heard("user", "[Bob: hi]\n[Cy: yo]\nhello", 0), history[3]]
    assert pending == ["Bob: bye"]


def test_a_conversation_without_overheard_lines_is_unchanged() -> None:
    history = [M("user", "a", 0), M("assistant", "b", 1)]
    assert fold_overheard(history) == (history, [])


def test_take_back_forgets_only_an_unfinished_turn(tmp_path: object) -> None:
    backend = ScriptedBackend(["Fine."])
    backend.enqueue_failure("boom")
    with Store(f"{tmp_path}/c.db") as store:
        bot = Chatbot(backend, Persona(name="villager"), user="ada", store=store)
        assert "".join(bot.send("How are you?")) == "Fine."
        assert bot.take_back() == 0  # a turn that completed stays
        with pytest.raises(Exception, match="boom"):
            list(bot.send("And now?"))
        assert bot.take_back() == 2
        assert [m.content for m in store.messages(bot.conversation_id)] == [  # type: ignore[arg-type]
            "How are you?", "Fine."]
        assert [m.content for m in bot.log] == ["How are you?", "Fine."]


def test_thinking_and_fallback_lines_allow_only_known_placeholders() -> None:
    persona = Persona(name="v", character="Bertha", thinking_lines=("{name} waits for {user}.",))
    assert persona.fill(persona.thinking_lines[0], "Ada") == "Bertha waits for Ada."
    with pytest.raises(ValidationError, match="unknown placeholder"):
        Persona(name="v", fallback_lines=("{mood}",))
    with pytest.raises(ValidationError):
        Persona(name="v", fallback_lines=())
