"""The ``LanguageBackend`` contract, one set of tests run over every backend.

A new backend is correct when it passes these. Each runs for real: llama.cpp in-process, a
tiny transformers model built by the tests, the ``openai`` backend against chinwag's server
and llama.cpp's server, the ``http`` backend against both (the shipped example configs), a
"person" answering the ``human`` backend through text streams, and the scripted backend.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from chinwag.backends.base import LanguageBackend
from chinwag.backends.config import load_llm_config
from chinwag.backends.human import HumanBackend
from chinwag.backends.openai_http import OpenAIBackend
from chinwag.backends.raw_http import HttpBackend
from chinwag.backends.scripted import ScriptedBackend
from chinwag.errors import BackendServerError, ContextOverflow, InvalidParams, SchemaError
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
    return config.build(Settings())


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


def test_openais_sampling_fields_are_honoured_or_refused_by_name(
        backend: LanguageBackend) -> None:
    """``presence_penalty``, ``frequency_penalty``, ``logit_bias``, ``logprobs``: a backend
    honours each (log-probabilities then come with the text) or refuses it by name before
    generating (``refuse_unsupported``), never ignores it."""
    for field, value in (("presence_penalty", 0.5), ("frequency_penalty", 0.5),
                         ("logit_bias", {100: -1.0}), ("logprobs", 1)):
        try:
            events = list(backend.generate("Once upon a time", GREEDY.with_(
                max_tokens=4, **{field: value})))
        except InvalidParams as e:
            assert (e.param, e.code) == (field, "unsupported_parameter")
            continue
        assert isinstance(events[-1], Done), field
        if field == "logprobs":
            records = [r for e in events if isinstance(e, TokenEvent) for r in e.logprobs]
            assert records and all(len(r.top) <= 1 for r in records)


def test_an_invalid_schema_is_a_schema_error(backend: LanguageBackend) -> None:
    with pytest.raises(SchemaError):
        collect(backend.generate("x", GREEDY.with_(json_schema={"type": 12})))


def test_choose_picks_one_of_the_options(backend: LanguageBackend) -> None:
    options = ["yes", "no", "maybe"]
    choice = backend.choose(ASK, options)
    assert 0 <= choice.index < len(options) and choice.option == options[choice.index]
    assert len(choice.scores) == len(options)
    assert choice.scores[choice.index] == max(choice.scores) == choice.logprob
    for bad in ([], ["yes", ""]):
        with pytest.raises(InvalidParams, match="options must be non-empty strings") as e:
            backend.choose(ASK, bad)
        assert e.value.param == "options"


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


# -- rules every backend shares (one implementation each), checked on the cheap backends -----


def _no_server(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the backend sent {request.url} when it should not have")


class NoPerson(io.StringIO):
    """Input that fails the test when the backend reads it."""

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        raise AssertionError("the human backend asked the person when it should not have")


def _json_answers(text: str) -> httpx.MockTransport:
    """A server answering ``text`` on every endpoint, in the shape each backend reads: the
    ``http`` examples' ``results.0.text`` and an OpenAI stream."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/completions"):
            event = {"choices": [{"text": text, "delta": {"content": text},
                                  "finish_reason": "stop"}]}
            return httpx.Response(200, text=f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n")
        return httpx.Response(200, json={"results": [{"text": text}]})
    return httpx.MockTransport(handler)


CHEAP: dict[str, Callable[..., LanguageBackend]] = {
    "scripted": lambda transport, person, fmt=None: ScriptedBackend(),
    "human": lambda transport, person, fmt=None: HumanBackend(
        input=person, output=io.StringIO(), chat_format=fmt),
    "openai-chat": lambda transport, person, fmt=None: OpenAIBackend(
        "http://openai.test/v1", model_id="m", tokenize="estimate", choose="enum",
        transport=transport, chat_format=fmt),
    "openai-completions": lambda transport, person, fmt=None: OpenAIBackend(
        "http://openai.test/v1", model_id="m", api="completions", tokenize="estimate",
        choose="enum", transport=transport, chat_format=fmt),
    "http": lambda transport, person, fmt=None: HttpBackend(
        "http://svc.test", "/gen", schema_key="json_schema", transport=transport,
        chat_format=fmt),
}


@pytest.mark.parametrize("kind", sorted(CHEAP))
@pytest.mark.parametrize("options", [[], [""], ["yes", ""]], ids=["none", "empty", "one-empty"])
def test_no_options_or_an_empty_one_is_refused_before_any_work(kind: str,
                                                               options: list[str]) -> None:
    backend = CHEAP[kind](httpx.MockTransport(_no_server), NoPerson())
    with pytest.raises(InvalidParams, match=r"^options must be non-empty strings$") as e:
        backend.choose(ASK, options)
    assert e.value.param == "options"
    assert not getattr(backend, "requests", [])  # the scripted backend recorded nothing


@pytest.mark.parametrize(("kind", "answer"), [
    ("scripted", ""), ("human", "2"), ("openai-chat", '{"choice": "no"}'),
    ("openai-completions", '{"choice": "no"}'), ("http", "2")])
def test_an_option_picked_without_scores_scores_zero_and_the_others_minus_inf(
        kind: str, answer: str) -> None:
    backend = CHEAP[kind](_json_answers(answer), io.StringIO(f"{answer}\n"))
    if isinstance(backend, ScriptedBackend):
        backend.enqueue_choice(1)
    choice = backend.choose(ASK, ["yes", "no", "maybe"])
    assert (choice.index, choice.option, choice.logprob) == (1, "no", 0.0)
    assert choice.scores == [-math.inf, 0.0, -math.inf]


@pytest.mark.parametrize("kind", ["human", "openai-completions", "http"])
def test_a_persona_format_is_honoured_when_neither_the_user_nor_the_model_chose(
        kind: str) -> None:
    free = CHEAP[kind](httpx.MockTransport(_no_server), NoPerson())
    assert free.chat_format.name == "transcript" and free.format_for(None) is free.chat_format
    assert free.format_for("chatml").name == "chatml"
    forced = CHEAP[kind](httpx.MockTransport(_no_server), NoPerson(), "llama-3")
    assert forced.format_for("chatml") is forced.chat_format
    assert forced.chat_format.name == "llama-3"


@pytest.mark.parametrize("kind", ["scripted", "openai-chat"])
def test_a_fixed_format_stands_whatever_the_persona_asks(kind: str) -> None:
    backend = CHEAP[kind](httpx.MockTransport(_no_server), NoPerson())
    assert backend.format_for("llama-3") is backend.chat_format
    assert backend.chat_format.name == ("transcript" if kind == "scripted" else "chatml")


@pytest.mark.parametrize("kind", ["human", "openai-chat", "http"])
def test_backends_without_a_tokenizer_estimate_four_characters_a_token(kind: str) -> None:
    backend = CHEAP[kind](httpx.MockTransport(_no_server), NoPerson())
    assert [backend.count_tokens(t) for t in ("", "abcd", "abcde", "x" * 401)] == [0, 1, 2, 101]
    assert not backend.capabilities.exact_token_count


@pytest.mark.parametrize(("answer", "count"), [({"count": 7}, 7), ({"tokens": [5, 6, 7]}, 3)])
@pytest.mark.parametrize("kind", ["openai", "http"])
def test_a_tokenize_answer_is_read_the_same_by_every_remote_backend(
        kind: str, answer: dict[str, Any], count: int) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=answer))
    backend: LanguageBackend = (
        OpenAIBackend("http://openai.test/v1", model_id="m", tokenize="server",
                      transport=transport) if kind == "openai"
        else HttpBackend("http://svc.test", "/gen", tokenize_path="/tokenize",
                         transport=transport))
    assert backend.count_tokens("Hello there") == count


@pytest.mark.parametrize("kind", ["openai", "http"])
def test_a_tokenize_answer_without_a_count_is_a_server_error(kind: str) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"n": 3}))
    backend: LanguageBackend = (
        OpenAIBackend("http://openai.test/v1", model_id="m", tokenize="server",
                      transport=transport) if kind == "openai"
        else HttpBackend("http://svc.test", "/gen", tokenize_path="/tokenize",
                         transport=transport))
    with pytest.raises(BackendServerError, match="gave no token count"):
        backend.count_tokens("Hello there")


@pytest.mark.parametrize("kind", ["human", "openai-chat", "openai-completions", "http"])
@pytest.mark.parametrize("reply", ['{"answer": "perhaps"}', "yes"], ids=["invalid", "not-json"])
def test_output_that_breaks_the_schema_is_one_schema_error_everywhere(kind: str,
                                                                      reply: str) -> None:
    backend = CHEAP[kind](_json_answers(reply), io.StringIO(f"{reply}\n" * 3))
    with pytest.raises(SchemaError, match=r"^the .+ does not match the JSON Schema \("):
        collect(backend.chat(ASK, GREEDY.with_(json_schema=ANSWER)))
