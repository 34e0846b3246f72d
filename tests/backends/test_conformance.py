"""The ``LanguageBackend`` contract, one set of tests run over every backend.

A new backend is correct when it passes these. Each runs for real: llama.cpp in-process, a
tiny transformers model built by the tests, the ``openai`` backend against chinwag's server
and llama.cpp's server, the ``http`` backend against both (the shipped example configs), a
"person" answering the ``human`` backend through text streams, and the scripted backend.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chinwag.backends.base import LanguageBackend
from chinwag.backends.config import backend_from_config, load_llm_config
from chinwag.backends.human import HumanBackend
from chinwag.backends.openai_http import OpenAIBackend
from chinwag.backends.scripted import ScriptedBackend
from chinwag.errors import ContextOverflow, InvalidParams, SchemaError
from chinwag.settings import Settings
from chinwag.types import Done, Message, SamplingParams, TokenEvent, collect

CONFIGS = Path(__file__).parents[2] / "configs" / "llm"
GREEDY = SamplingParams(temperature=0, max_tokens=16)
ANSWER = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}},
          "required": ["answer"], "additionalProperties": False}
ASK = [Message("system", "You answer questions."),
       Message("user", "Is the sky blue? Answer as JSON with the key answer: yes or no.")]


class RobotPerson(io.StringIO):
    """What a person at the ``human`` backend types: the number 1 when asked to choose, else
    a JSON answer (which any stop string in the tests cuts at its space)."""

    def __init__(self, shown: io.StringIO) -> None:
        super().__init__()
        self.shown = shown

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        asked = self.shown.getvalue().rsplit("--- prompt ---", 1)[-1]
        return "1\n" if "choose one" in asked else '{"answer": "yes"}\n'


def _http(name: str, url: str) -> LanguageBackend:
    config = load_llm_config(CONFIGS / name).model_copy(update={"host": url})
    return backend_from_config(config, Settings())


BACKENDS = ["scripted", "llamacpp", "transformers", "openai-chinwag", "openai-llama-server",
            "http-chinwag", "http-llama-server", "human"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[LanguageBackend]:
    kind = request.param
    made: LanguageBackend
    if kind == "scripted":
        made = ScriptedBackend(default_reply='{"answer": "yes"}', context_length=512)
    elif kind == "llamacpp":
        made = request.getfixturevalue("llama")
    elif kind == "transformers":
        from chinwag.backends.transformers import TransformersBackend

        made = TransformersBackend(request.getfixturevalue("tiny_hf_model"))
    elif kind.startswith("openai"):
        remote = request.getfixturevalue("server" if kind.endswith("chinwag")
                                         else "llama_server")
        made = OpenAIBackend(f"{remote.url}/v1", model_id="gemma-3-270m-q4_k_m",
                             context_length=2048)
    elif kind == "http-chinwag":
        made = _http("textgen-legacy.yaml", request.getfixturevalue("server").url)
    elif kind == "http-llama-server":
        made = _http("llamacpp-completion.yaml", request.getfixturevalue("llama_server").url)
    else:
        shown = io.StringIO()
        made = HumanBackend(input=RobotPerson(shown), output=shown, context_length=4096)
    yield made
    if kind not in ("llamacpp",):  # the session's model stays loaded for other tests
        made.close()


def test_it_describes_itself(backend: LanguageBackend) -> None:
    info = backend.info()
    assert info.name and info.chat_format
    assert info.n_ctx == backend.context_length > 0
    assert backend.max_parallel >= 1


def test_count_tokens_grows_with_the_text(backend: LanguageBackend) -> None:
    short = backend.count_tokens("Hello world")
    assert isinstance(short, int) and short > 0
    assert backend.count_tokens("Hello world, " * 40) > short


def test_generate_streams_pieces_then_exactly_one_done(backend: LanguageBackend) -> None:
    events = list(backend.generate("The capital of France is", GREEDY))
    assert isinstance(events[-1], Done)
    assert all(isinstance(e, TokenEvent) for e in events[:-1])
    done = events[-1]
    assert done.finish_reason in ("stop", "length")
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens >= 0
    assert "".join(e.text for e in events[:-1])  # some text came


def test_max_tokens_bounds_the_reply(backend: LanguageBackend) -> None:
    _, done = collect(backend.generate("Once upon a time", GREEDY.with_(max_tokens=3)))
    if backend.capabilities.exact_token_count:
        assert done.usage.completion_tokens <= 3


def test_a_stop_string_ends_the_reply_and_is_left_out(backend: LanguageBackend) -> None:
    text, done = collect(backend.generate("Once upon a time", GREEDY.with_(stop=(" ",))))
    assert " " not in text
    assert done.finish_reason == "stop"


def test_chat_streams_a_reply(backend: LanguageBackend) -> None:
    events = list(backend.chat(ASK, GREEDY))
    assert isinstance(events[-1], Done) and sum(isinstance(e, Done) for e in events) == 1


def test_json_schema_is_enforced_or_refused(backend: LanguageBackend) -> None:
    params = GREEDY.with_(max_tokens=60, json_schema=ANSWER)
    if backend.capabilities.json_schema:
        text, _ = collect(backend.chat(ASK, params))
        jsonschema.validate(json.loads(text), ANSWER)
    else:
        with pytest.raises(SchemaError):
            collect(backend.chat(ASK, params))


def test_an_invalid_schema_is_a_schema_error(backend: LanguageBackend) -> None:
    with pytest.raises(SchemaError):
        collect(backend.generate("x", GREEDY.with_(json_schema={"type": 12})))


def test_choose_picks_one_of_the_options(backend: LanguageBackend) -> None:
    options = ["yes", "no", "maybe"]
    choice = backend.choose(ASK, options)
    assert 0 <= choice.index < len(options) and choice.option == options[choice.index]
    assert len(choice.scores) == len(options)
    assert choice.scores[choice.index] == max(choice.scores) == choice.logprob
    with pytest.raises(InvalidParams):
        backend.choose(ASK, [])


def test_a_prompt_longer_than_the_context_is_context_overflow(backend: LanguageBackend) -> None:
    with pytest.raises(ContextOverflow):
        collect(backend.generate("word " * (backend.context_length * 2), GREEDY))


def test_closing_a_stream_early_leaves_the_backend_usable(backend: LanguageBackend) -> None:
    events: Any = backend.generate("Once upon a time", GREEDY.with_(max_tokens=64))
    first = next(events)
    assert isinstance(first, TokenEvent | Done)
    events.close()
    _, done = collect(backend.generate("Hello", GREEDY.with_(max_tokens=4)))
    assert isinstance(done, Done)
