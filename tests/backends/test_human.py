"""The ``human`` backend: unit tests with text streams, then a person at a real
pseudo-terminal typing the replies of ``chinwag chat --llm human.yaml``."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pexpect
import pytest

from chinwag.backends.human import HumanBackend
from chinwag.errors import Cancelled, InvalidParams, SchemaError
from chinwag.types import Message, SamplingParams, collect

CONFIGS = Path(__file__).parents[2] / "configs" / "llm"


def person(*lines: str) -> tuple[HumanBackend, io.StringIO]:
    shown = io.StringIO()
    return HumanBackend(input=io.StringIO("".join(f"{line}\n" for line in lines)),
                        output=shown), shown


def test_the_typed_line_is_the_reply_and_only_new_prompt_text_is_shown() -> None:
    backend, shown = person("Hello, traveller.", "Fine, thanks.")
    text, done = collect(backend.generate("User: Hi\nBot:", SamplingParams()))
    assert text == "Hello, traveller." and done.finish_reason == "stop"
    assert "User: Hi\nBot:" in shown.getvalue()
    text, _ = collect(backend.generate("User: Hi\nBot: Hello, traveller.\nUser: How are you?\n"
                                       "Bot:", SamplingParams()))
    assert text == "Fine, thanks."
    second = shown.getvalue().split("--- prompt ---")[2]
    assert "User: Hi" not in second and "How are you?" in second


def test_stop_strings_apply_to_typed_text() -> None:
    backend, _ = person("Sure. User: no")
    text, _ = collect(backend.generate("x", SamplingParams(stop=("User:",))))
    assert text == "Sure. "


def test_a_reply_breaking_the_schema_is_asked_for_again() -> None:
    schema = {"type": "object", "properties": {"mood": {"enum": ["calm", "angry"]}},
              "required": ["mood"]}
    backend, shown = person("calm", '{"mood": "sleepy"}', '{"mood": "calm"}')
    text, _ = collect(backend.generate("How do you feel?", SamplingParams(json_schema=schema)))
    assert text == '{"mood": "calm"}'
    assert shown.getvalue().count("does not match the schema") == 2
    stubborn, _ = person("no", "no", "no")
    with pytest.raises(SchemaError, match="does not match"):
        stubborn.generate("?", SamplingParams(json_schema=schema))


def test_choose_reads_an_option_number() -> None:
    backend, shown = person("7", "two", "2")
    choice = backend.choose([Message("user", "Left or right?")], ["left", "right"])
    assert (choice.index, choice.option) == (1, "right")
    assert "1. left" in shown.getvalue() and "2. right" in shown.getvalue()
    with pytest.raises(InvalidParams):
        backend.choose([Message("user", "?")], [])


def test_the_end_of_input_cancels() -> None:
    backend, _ = person()
    with pytest.raises(Cancelled, match="input ended"):
        backend.generate("Hi", SamplingParams())


@pytest.mark.slow
def test_a_person_types_the_replies_of_chinwag_chat_in_a_terminal(tmp_path: Path) -> None:
    """``chinwag chat --llm human.yaml`` in a real pty: the person sees the persona's prompt,
    types the answer, and the chat shows it as the persona's reply."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHINWAG_", "LLM_"))}
    env.update(TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1", XDG_DATA_HOME=str(tmp_path))
    child = pexpect.spawn(sys.executable, ["-m", "chinwag", "chat", "--persona", "villager",
                                           "--llm", str(CONFIGS / "human.yaml"), "--new"],
                          env=env, encoding="utf-8", timeout=60, dimensions=(50, 200))
    try:
        child.expect_exact("\x1b[?2004h")  # the chat's prompt is up
        child.sendline("Good morning! Who are you?")
        child.expect_exact("--- your reply (one line) ---")
        assert "Good morning! Who are you?" in child.before  # the prompt shown to the person
        assert "Bertha" in child.before  # with the persona's system prompt
        child.sendline("I am Bertha, typed by a human.")
        child.expect_exact("I am Bertha, typed by a human.")  # the echo of the typing
        child.expect_exact("I am Bertha, typed by a human.")  # the reply the chat shows
        child.expect_exact("\x1b[?2004h")
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
