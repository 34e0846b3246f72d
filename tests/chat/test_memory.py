"""Memory policies and stored conversations, on the scripted backend: exactly what reaches
the prompt, and what is saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from chinwag.backends.scripted import ScriptedBackend
from chinwag.chat import Chatbot
from chinwag.chat.memory import MemoryPolicy, in_window, replayable
from chinwag.chat.persona import Persona
from chinwag.errors import ContextOverflow
from chinwag.store import Store


def persona(**memory: object) -> Persona:
    return Persona(name="clerk", character="Clerk", user_name="User",
                   system_prompt="You are {name}.", memory=MemoryPolicy(**memory),  # type: ignore[arg-type]
                   facts=("The shop opens at nine.",))


def talk(bot: Chatbot, backend: ScriptedBackend, turns: int, start: int = 0) -> None:
    for i in range(start, start + turns):
        backend.enqueue(f"answer {i}")
        assert "".join(bot.send(f"message {i}")) == f"answer {i}"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "chat.db")


def test_window_sends_exactly_the_last_n_messages() -> None:
    backend = ScriptedBackend()
    bot = Chatbot(backend, persona(policy="window", window=4))
    talk(bot, backend, 6)
    backend.enqueue("ok")
    "".join(bot.send("now"))
    prompt = backend.requests[-1].prompt
    assert "message 3" not in prompt and "answer 3" not in prompt
    for i in (4, 5):
        assert f"User: message {i}\nClerk: answer {i}" in prompt
    assert prompt.endswith("User: now\nClerk:")


def test_token_budget_keeps_as_much_as_fits_and_never_fails_for_length() -> None:
    backend = ScriptedBackend(context_length=120)
    bot = Chatbot(backend, persona(policy="token_budget"), max_tokens=20)
    talk(bot, backend, 40)
    prompt = backend.requests[-1].prompt
    assert backend.count_tokens(prompt) + 20 <= 120
    assert "message 39" in prompt and "message 0\n" not in prompt
    assert "message 30" in prompt  # far more than a 25-message window would cut to here


def test_one_message_too_long_even_alone_names_its_size_and_saves_nothing(
        store: Store) -> None:
    backend = ScriptedBackend(context_length=60)
    bot = Chatbot(backend, persona(), store=store, max_tokens=10)
    talk(bot, backend, 3)
    with pytest.raises(ContextOverflow) as info:
        bot.send("word " * 80)
    assert info.value.prompt_tokens > 80 and info.value.n_ctx == 60
    assert len(store.messages(bot.conversation_id or "")) == 6


def test_pinned_facts_are_always_sent(store: Store) -> None:
    backend = ScriptedBackend()
    conversation = store.conversation_for("clerk", "alice")
    store.add_fact("clerk", "alice", "Alice is allergic to nuts.")
    bot = Chatbot(backend, persona(window=2), user="alice", store=store,
                  conversation=conversation)
    talk(bot, backend, 5)
    prompt = backend.requests[-1].prompt
    assert "The shop opens at nine." in prompt and "Alice is allergic to nuts." in prompt


def test_summary_is_written_after_the_reply_from_what_fell_out(store: Store) -> None:
    backend = ScriptedBackend()
    bot = Chatbot(backend, persona(policy="summary", window=4, summary_batch=2),
                  store=store, user="Zorblax")
    backend.enqueue("Hello, Zorblax!")
    "".join(bot.send("My name is Zorblax."))
    talk(bot, backend, 2, start=1)
    assert not bot.summary_due()  # nothing has left the window yet
    talk(bot, backend, 1, start=3)
    assert bot.summary_due()
    asked = len(backend.requests)
    backend.enqueue(" User's name is Zorblax.\n- User said hello.")
    assert bot.update_summary()
    notes_prompt = backend.requests[asked].prompt
    assert "Zorblax: My name is Zorblax." in notes_prompt and notes_prompt.endswith("Notes:\n-")
    assert bot.summary == "- User's name is Zorblax.\n- User said hello."
    stored = store.get_conversation(bot.conversation_id or "")
    assert stored.summary == bot.summary and stored.summarized_through == 1
    talk(bot, backend, 1, start=4)
    assert "Notes on the conversation so far:\n- User's name is Zorblax." in \
        backend.requests[-1].prompt


def test_a_summary_keeps_its_first_notes_when_cut_to_size() -> None:
    from chinwag.chat.memory import summarize
    from chinwag.prompting.base import Speakers
    from chinwag.types import Message

    backend = ScriptedBackend()
    previous = "\n".join(f"- fact number {i}" for i in range(30))
    backend.enqueue(" a new fact\n- another new fact")
    policy = MemoryPolicy(policy="summary", summary_max_tokens=40)
    notes = summarize(backend, previous, [Message("user", "hi")], Speakers("B", "U"), policy)
    lines = notes.splitlines()
    assert lines[:3] == ["- fact number 0", "- fact number 1", "- fact number 2"]
    assert lines[-1] == "- another new fact" and backend.count_tokens(notes) <= 40


def test_conversation_is_saved_and_resumed(store: Store, tmp_path: Path) -> None:
    backend = ScriptedBackend()
    bot = Chatbot(backend, persona(), user="alice", store=store)
    talk(bot, backend, 2)
    cid = bot.conversation_id
    assert cid is not None
    saved = store.messages(cid)
    assert [m.content for m in saved] == ["message 0", "answer 0", "message 1", "answer 1"]
    assert all(m.complete for m in saved)
    assert [m.tokens for m in saved] == [backend.count_tokens(m.content) for m in saved]
    store.close()
    again = Store(tmp_path / "chat.db")
    resumed = Chatbot(backend, persona(), user="alice", store=again, conversation=cid)
    backend.enqueue("welcome back")
    "".join(resumed.send("I am back"))
    assert "alice: message 1\nClerk: answer 1\nalice: I am back" in backend.requests[-1].prompt


def test_a_stopped_reply_is_saved_incomplete_and_a_lost_one_is_not_replayed(
        store: Store) -> None:
    backend = ScriptedBackend()
    bot = Chatbot(backend, persona(), store=store, user="bob")
    backend.enqueue("one two three four five")
    stream = bot.send("count")
    next(stream)
    stream.close()  # Ctrl-C, or a client that went away
    saved = store.messages(bot.conversation_id or "")
    assert [(m.role, m.complete) for m in saved] == [("user", False), ("assistant", False)]
    assert saved[1].content == "one"
    store.begin_turn(bot.conversation_id or "", "a turn the process died in")
    log = store.messages(bot.conversation_id or "")
    assert [m.content for m in replayable(log)] == ["count", "one"]


def test_window_never_starts_with_a_reply() -> None:
    backend = ScriptedBackend()
    bot = Chatbot(backend, persona(window=3))
    talk(bot, backend, 3)
    assert [m.role for m in in_window(bot.log, bot.persona.memory)] == ["user", "assistant"]


def test_two_users_of_one_persona_never_share_a_prompt(store: Store) -> None:
    backend = ScriptedBackend()
    alice = Chatbot(backend, persona(), user="alice", store=store,
                    conversation=store.conversation_for("clerk", "alice"))
    bob = Chatbot(backend, persona(), user="bob", store=store,
                  conversation=store.conversation_for("clerk", "bob"))
    for i in range(3):
        backend.enqueue(f"to alice {i}", f"to bob {i}")
        "".join(alice.send(f"alice says {i}"))
        "".join(bob.send(f"bob says {i}"))
    for request in backend.requests:
        assert not ("alice" in request.prompt and "bob" in request.prompt)


def test_forget_deletes_the_conversation(store: Store) -> None:
    backend = ScriptedBackend()
    bot = Chatbot(backend, persona(), user="carol", store=store)
    talk(bot, backend, 1)
    old = bot.conversation_id
    bot.forget()
    assert bot.conversation_id != old and bot.log == []
    assert [c.id for c in store.list_conversations(user="carol")] == [bot.conversation_id]
