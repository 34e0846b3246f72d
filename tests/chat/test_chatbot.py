"""Logic around the model, on the scripted backend."""

from pathlib import Path

import pytest

from chinwag.backends.scripted import ScriptedBackend
from chinwag.chat import Chatbot, get_persona
from chinwag.errors import BackendError, ContextOverflow, InvalidParams
from chinwag.prompting import Speakers
from chinwag.store import Store


def test_reply_streams_and_history_grows(scripted: ScriptedBackend) -> None:
    scripted.enqueue(" Well met, traveller!")
    bot = Chatbot(scripted, get_persona("villager"))
    pieces = list(bot.send("Hello!"))
    assert len(pieces) > 1
    assert "".join(pieces) == "Well met, traveller!"
    assert [m.role for m in bot.history] == ["user", "assistant"]
    assert bot.history[1].content == "Well met, traveller!"
    assert bot.last is not None and bot.last.finish_reason == "stop"


def test_prompt_has_persona_examples_and_ends_with_speaker(scripted: ScriptedBackend) -> None:
    bot = Chatbot(scripted, get_persona("villager"))
    list(bot.send("Where is the inn?"))
    prompt = scripted.requests[0].prompt
    assert "Limbo" in prompt
    assert "Traveller: Hello there!\nBertha: Well met" in prompt
    assert prompt.endswith("Traveller: Where is the inn?\nBertha:")
    assert "\nTraveller:" in scripted.requests[0].params.stop  # type: ignore[union-attr]


def test_reply_never_contains_the_users_next_turn(scripted: ScriptedBackend) -> None:
    scripted.enqueue(" Over there.\nTraveller: thanks\nBertha: bye")
    bot = Chatbot(scripted, get_persona("villager"))
    assert "".join(bot.send("Where?")) == "Over there."


def test_persona_sampling_and_overrides(scripted: ScriptedBackend) -> None:
    bot = Chatbot(scripted, get_persona("villager"), temperature=0.0)
    assert bot.params.temperature == 0.0
    assert bot.params.max_tokens == 80  # from the persona
    bot.set(max_tokens=5)
    list(bot.send("hi"))
    assert scripted.requests[0].params.max_tokens == 5  # type: ignore[union-attr]


def test_invalid_setting_changes_nothing(scripted: ScriptedBackend) -> None:
    bot = Chatbot(scripted, get_persona("villager"))
    before = bot.params
    with pytest.raises(InvalidParams):
        bot.set(top_p=3)
    assert bot.params == before


def test_oldest_turns_are_dropped_never_the_preamble() -> None:
    backend = ScriptedBackend(context_length=260, default_reply="ok fine")
    bot = Chatbot(backend, get_persona("villager"), max_tokens=20)
    for i in range(30):
        list(bot.send(f"message number {i} with a few extra words in it"))
    prompt = backend.requests[-1].prompt
    assert backend.count_tokens(prompt) + 20 <= 260
    assert "Limbo" in prompt and "Hello there!" in prompt  # system prompt and examples kept
    assert "message number 29" in prompt
    assert "message number 0 " not in prompt
    _, dropped = bot.prompt_for("next")
    assert dropped > 0 and dropped % 2 == 0


def test_message_too_long_even_alone_is_context_overflow() -> None:
    backend = ScriptedBackend(context_length=200)
    bot = Chatbot(backend, get_persona("villager"))
    with pytest.raises(ContextOverflow) as err:
        bot.send("word " * 500)
    assert err.value.prompt_tokens > 200 and err.value.n_ctx == 200
    assert bot.history == []  # nothing half-recorded


def test_reset_forgets(scripted: ScriptedBackend) -> None:
    bot = Chatbot(scripted, get_persona("assistant"))
    list(bot.send("hi"))
    bot.reset()
    assert bot.history == []


def test_closing_the_stream_keeps_the_partial_turn(scripted: ScriptedBackend) -> None:
    scripted.enqueue("one two three four five")
    bot = Chatbot(scripted, get_persona("assistant"))
    stream = bot.send("count")
    assert next(stream) == "one"
    stream.close()
    assert bot.history[0].content == "count"
    assert bot.history[1].content == "one"


def test_switch_persona_keeps_history(scripted: ScriptedBackend) -> None:
    bot = Chatbot(scripted, get_persona("assistant"))
    list(bot.send("hi"))
    bot.switch(get_persona("pogi"))
    list(bot.send("hello again"))
    assert scripted.requests[-1].prompt.endswith("Friend: hello again\nPogi:")
    assert "Friend: hi\n" in scripted.requests[-1].prompt


def test_user_name_is_used_in_transcript(scripted: ScriptedBackend) -> None:
    bot = Chatbot(scripted, get_persona("villager"), user="Alice")
    list(bot.send("hi"))
    assert scripted.requests[0].prompt.endswith("Alice: hi\nBertha:")
    assert get_persona("villager").speakers("Alice") == Speakers("Bertha", "Alice")


def test_a_model_failing_mid_reply_is_raised_and_the_turn_stored_incomplete(
        tmp_path: Path) -> None:
    """The partial reply is kept, marked incomplete, never as a finished answer."""
    backend = ScriptedBackend()
    backend.enqueue_failure("llama_decode failed with code -3", partial="Half an")
    store = Store(tmp_path / "chat.db")
    bot = Chatbot(backend, get_persona("villager"), user="alice", store=store)
    pieces: list[str] = []
    with pytest.raises(BackendError, match="llama_decode failed"):
        for piece in bot.send("Tell me a story"):
            pieces.append(piece)
    assert "".join(pieces) == "Half an"
    stored = store.messages(bot.conversation_id or "")
    assert [(m.role, m.content, m.complete) for m in stored] == [
        ("user", "Tell me a story", False), ("assistant", "Half an", False)]
    store.close()


def test_a_reply_cancelled_by_someone_else_is_stored_incomplete(scripted: ScriptedBackend,
                                                                tmp_path: Path) -> None:
    """A stream that ends with ``Done("cancelled")`` (the server stopped it for a client that
    left) is not a finished answer."""
    from chinwag.types import Done, TokenEvent, Usage

    store = Store(tmp_path / "chat.db")
    bot = Chatbot(scripted, get_persona("villager"), user="bob", store=store)
    bot.backend.generate_chat = lambda prompt, params: iter(  # type: ignore[method-assign]
        [TokenEvent("Well"), Done("cancelled", Usage(10, 1))])
    assert "".join(bot.send("Hello")) == "Well"
    stored = store.messages(bot.conversation_id or "")
    assert [m.complete for m in stored] == [False, False]
    store.close()
