"""TranscriptFormat: ``Name: text`` lines for base models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chinwag.errors import FormatError
from chinwag.prompting import Speakers, TranscriptFormat
from chinwag.types import Message

GOLDEN = Path(__file__).parent / "golden" / "transcript.txt"
BERTHA = Speakers(assistant="Bertha", user="Traveller")

CONVERSATION = [Message(m["role"], m["content"]) for m in
                json.loads((Path(__file__).parent / "golden" / "conversation.json").read_text())]


def test_transcript_renders_the_golden_file() -> None:
    prompt = TranscriptFormat().render(CONVERSATION, BERTHA)
    assert prompt.text == GOLDEN.read_bytes().decode("utf-8")
    assert prompt.format == "transcript"


def test_system_messages_make_the_preamble() -> None:
    messages = [Message("system", "You are Bertha."), Message("system", "It is night."),
                Message("user", "Hi")]
    text = TranscriptFormat().render(messages, BERTHA).text
    assert text == "You are Bertha.\n\nIt is night.\n\nTraveller: Hi\nBertha:"


def test_example_exchanges_become_lines_and_the_prompt_ends_with_the_assistants_name() -> None:
    messages = [
        Message("system", "You are Bertha."),
        Message("user", "Got ale?"),
        Message("assistant", "The best in Bree."),
        Message("user", "One, please."),
    ]
    text = TranscriptFormat().render(messages, BERTHA).text
    assert text.splitlines()[2:] == [
        "Traveller: Got ale?",
        "Bertha: The best in Bree.",
        "Traveller: One, please.",
        "Bertha:",
    ]
    assert text.endswith("Bertha:")


def test_without_a_system_message_there_is_no_preamble() -> None:
    assert TranscriptFormat().render([Message("user", "Hi")]).text == "User: Hi\nAssistant:"


def test_stop_strings_include_the_users_next_line() -> None:
    stop = TranscriptFormat().render(CONVERSATION, BERTHA).stop
    assert "\nTraveller:" in stop
    assert "\nBertha:" in stop


@pytest.mark.parametrize("name", ["Sir: Knight", "Two\nLines", "", "   "])
def test_speaker_name_that_breaks_the_transcript_is_a_format_error(name: str) -> None:
    with pytest.raises(FormatError):
        TranscriptFormat().render(CONVERSATION, Speakers(assistant=name, user="Traveller"))
    with pytest.raises(FormatError):
        TranscriptFormat().render(CONVERSATION, Speakers(assistant="Bertha", user=name))
