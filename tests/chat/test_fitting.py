"""fit_messages: the longest history that fits, found in a few renders."""

from __future__ import annotations

import pytest

from chinwag.backends.scripted import ScriptedBackend
from chinwag.chat.fitting import fit_messages, tidy_reply
from chinwag.errors import ContextOverflow
from chinwag.prompting.base import Speakers
from chinwag.types import Done, Message, TokenEvent, TokenLogprob, Usage

SPEAKERS = Speakers(assistant="Bot", user="User")


class CountingBackend(ScriptedBackend):
    """Counts renders, to show that fitting does not re-render once per dropped message."""

    renders = 0

    def render(self, messages, speakers, chat_format):  # type: ignore[no-untyped-def]
        self.renders += 1
        return super().render(messages, speakers, chat_format)


def history(turns: int) -> list[Message]:
    out = []
    for i in range(turns):
        out += [Message("user", f"question number {i} " + "word " * (i % 5)),
                Message("assistant", f"answer number {i} " + "more " * (i % 3))]
    return out


def fit(backend: ScriptedBackend, messages: list[Message], reserve: int = 10, **kw):  # type: ignore[no-untyped-def]
    return fit_messages(backend, [Message("system", "be brief")], messages,
                        speakers=SPEAKERS, chat_format=backend.format_for(None),
                        reserve=reserve, **kw)


@pytest.mark.parametrize("n_ctx", [60, 100, 200, 333, 700])
def test_keeps_the_longest_suffix_that_fits(n_ctx: int) -> None:
    backend = CountingBackend(context_length=n_ctx)
    messages = [*history(40), Message("user", "and now?")]
    fitted = fit(backend, messages)
    assert fitted.prompt_tokens + 10 <= n_ctx
    assert fitted.dropped % 2 == 0, "a user message goes with its answer"
    kept = messages[fitted.dropped:]
    assert backend.render([Message("system", "be brief"), *kept], SPEAKERS,
                          backend.format_for(None)).text == fitted.prompt.text
    if fitted.dropped:  # keeping one more exchange would not have fitted
        longer = messages[fitted.dropped - 2:]
        text = backend.render([Message("system", "be brief"), *longer], SPEAKERS,
                              backend.format_for(None)).text
        assert backend.count_tokens(text) + 10 > n_ctx
    assert backend.renders <= 6


def test_stored_counts_are_used_instead_of_counting() -> None:
    backend = ScriptedBackend(context_length=80)
    messages = [*history(20), Message("user", "and now?")]
    counts = [backend.count_tokens(m.content) for m in messages]
    assert fit(backend, messages, counts=counts) == fit(backend, messages)


def test_system_messages_and_the_last_message_stay() -> None:
    backend = ScriptedBackend(context_length=50)
    messages = [*history(10), Message("system", "keep me"), *history(10),
                Message("user", "last one")]
    fitted = fit(backend, messages)
    assert "keep me" in fitted.prompt.text and "last one" in fitted.prompt.text


def test_a_message_that_cannot_fit_names_both_counts() -> None:
    backend = ScriptedBackend(context_length=30)
    with pytest.raises(ContextOverflow) as info:
        fit(backend, [*history(3), Message("user", "long " * 40)])
    assert info.value.n_ctx == 30 and info.value.prompt_tokens > 40


def test_without_drop_an_overflow_is_an_error() -> None:
    backend = ScriptedBackend(context_length=60)
    with pytest.raises(ContextOverflow):
        fit(backend, [*history(10), Message("user", "hi")], drop=False)


def test_when_nothing_but_the_last_message_fits_the_reply_gets_what_is_left() -> None:
    backend = ScriptedBackend(context_length=40)
    fitted = fit(backend, [*history(5), Message("user", "word " * 20)], reserve=30)
    assert fitted.dropped == 10 and fitted.prompt_tokens < 40


def test_trimming_the_reply_keeps_every_tokens_log_probability() -> None:
    """Stripped and held-back whitespace loses its text, not its tokens' records: each record
    is passed on once, in order (an event of no text carries a dropped token's)."""
    pieces = [" ", "Hello", " ", "there", "  "]
    events = [TokenEvent(p, (TokenLogprob(p, -float(i)),)) for i, p in enumerate(pieces)]
    out = list(tidy_reply([*events, Done("stop", Usage(1, 5))]))
    assert "".join(e.text for e in out if isinstance(e, TokenEvent)) == "Hello there"
    assert [r.logprob for e in out if isinstance(e, TokenEvent) for r in e.logprobs] == [
        0.0, -1.0, -2.0, -3.0, -4.0]
    assert isinstance(out[-1], Done)
