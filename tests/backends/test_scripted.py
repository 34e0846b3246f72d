import pytest

from chinwag.backends.scripted import ScriptedBackend
from chinwag.errors import ContextOverflow, InvalidParams
from chinwag.types import Message, SamplingParams, collect


def test_replays_in_order_and_records() -> None:
    backend = ScriptedBackend(["first", "second"])
    assert collect(backend.generate("a", SamplingParams()))[0] == "first"
    assert collect(backend.generate("b", SamplingParams()))[0] == "second"
    assert [r.prompt for r in backend.requests] == ["a", "b"]


def test_max_tokens_cuts_with_length() -> None:
    backend = ScriptedBackend(["one two three"])
    text, done = collect(backend.generate("p", SamplingParams(max_tokens=2)))
    assert text == "one two" and done.finish_reason == "length"


def test_overflow() -> None:
    with pytest.raises(ContextOverflow):
        ScriptedBackend(context_length=3).generate("a b c d", SamplingParams())


def test_choose_uses_queue() -> None:
    backend = ScriptedBackend()
    backend.enqueue_choice(2)
    choice = backend.choose([Message("user", "pick")], ["a", "b", "c"])
    assert (choice.index, choice.option) == (2, "c")
    with pytest.raises(InvalidParams):
        backend.choose([Message("user", "pick")], [])
