"""``chinwag chat`` driven through a real pseudo-terminal, as a person would use it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.slow

# prompt_toolkit switches bracketed paste on at the start of every prompt() call, and draws the
# prompt text with cursor moves; this escape sequence therefore marks "a new prompt is up".
PROMPT_UP = "\x1b[?2004h"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")

PERSONAS = Path(__file__).parent.parent / "data" / "personas"  # holds counter.yaml


def clean(text: str) -> str:
    return ANSI.sub("", text)


def spawn(*args: str) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHINWAG_", "LLM_"))}
    env.update(TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1", CHINWAG_PERSONAS=str(PERSONAS),
               CHINWAG_CACHE_DIR=os.environ.get("CHINWAG_CACHE_DIR", str(Path.home() / ".cache"
                                                                         / "chinwag")))
    # timeout: a deadline, not a wait; beside three busy loops, prefilling long-counter and
    # counting to 12 took 76 s
    child = pexpect.spawn(sys.executable, ["-m", "chinwag", "chat", *args], env=env,
                          encoding="utf-8", timeout=300, dimensions=(50, 200))
    child.expect_exact(PROMPT_UP)
    return child


@contextmanager
def session(*args: str) -> Iterator[pexpect.spawn]:
    """A chat that is left with /bye (which must end the process) when the block ends."""
    child = spawn(*args)
    try:
        yield child
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def ask(child: pexpect.spawn, text: str) -> str:
    """Type a message, wait for the next prompt, return what was printed in between."""
    child.sendline(text)
    child.expect_exact(PROMPT_UP)
    return clean(child.before)


def test_person_chats_interrupts_changes_settings_and_leaves() -> None:
    child = spawn("--persona", "villager")
    try:
        answer = ask(child, "Hello! What is this place?")
        assert "Bertha:" in answer
        reply = answer.split("Bertha:", 1)[1].strip()
        assert reply and "Traveller:" not in reply

        said = ask(child, "/set temperature 0")
        assert "Set temperature to 0.0" in said
        shown = ask(child, "/show")
        assert "temperature=0.0" in shown and "villager" in shown

        ask(child, '"""')
        assert "Bertha:" not in ask(child, "Here is a question on two lines:")  # still typing
        assert "Bertha:" in ask(child, 'where is the well?"""')

        switched = ask(child, "/persona long-counter")  # counts for longer than Ctrl-C takes
        assert "Now talking to Counter" in switched
        # The history is kept across /persona, and Bertha's first answer was sampled: a fresh
        # conversation makes the greedy counter's answer the same on every run.
        assert "new conversation" in ask(child, "/reset")
        ask(child, "/set max_tokens 3000")
        child.sendline("Count from 1 to 2000.")
        child.expect_exact("Counter:")
        child.expect(r"\b12\b")  # the answer is streaming...
        child.sendcontrol("c")  # ...and Ctrl-C stops it
        child.expect_exact("[stopped]", timeout=30)
        interrupted = clean(child.before)
        assert "1999" not in interrupted
        child.expect_exact(PROMPT_UP)
        ask(child, "/set max_tokens 12")
        assert "new conversation" in ask(child, "/reset")  # the stopped answer's length varies
        after = ask(child, "Count from 1 to 5.")  # the engine is free again after Ctrl-C
        assert "Counter:" in after and "1, 2" in after.split("Counter:", 1)[1]

        again = ask(child, "/reset")
        assert "new conversation" in again
        child.sendline("/bye")
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_ctrl_c_at_the_prompt_does_not_quit_and_ctrl_d_does() -> None:
    child = spawn("--persona", "pogi")
    try:
        child.sendcontrol("c")
        child.expect_exact("Use Ctrl-D or /bye to leave.")
        child.expect_exact(PROMPT_UP)
        child.sendcontrol("d")
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_conversation_is_resumed_next_time_and_new_starts_afresh(tmp_path: Path) -> None:
    """Tell the greedy ``recall`` persona a name, leave, come back: the history is there and
    the answer uses it; ``--new`` starts empty; ``/export`` and ``chinwag conversations``."""
    db = str(tmp_path / "chat.db")
    with session("--persona", "recall", "--db", db) as child:
        assert "Your name is Zorblax" in ask(child, "My name is Zorblax.")

    with session("--persona", "recall", "--db", db) as child:
        history = ask(child, "/history")
        assert "User: My name is Zorblax." in history and "Clerk: Your name is" in history
        assert "Zorblax" in ask(child, "What is my name?").split("Clerk:", 1)[1]
        out = tmp_path / "export.json"
        assert "Saved 4 messages" in ask(child, f"/export {out}")
        exported = json.loads(out.read_text())
        assert [m["role"] for m in exported["messages"]] == ["user", "assistant"] * 2

    with session("--persona", "recall", "--db", db, "--new") as child:
        assert "No messages yet." in ask(child, "/history")

    listed = subprocess.run([sys.executable, "-m", "chinwag", "conversations", "--db", db],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert exported["id"] in listed.stdout and listed.stdout.count("recall") == 2
