"""The ``http`` backend: its body template and answer paths, then the shipped example configs
against real servers: llama.cpp's ``/completion`` and chinwag's ``/api/v1/generate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from chinwag.backends.config import load_llm_config
from chinwag.backends.raw_http import BodyTemplate, HttpBackend, dig
from chinwag.errors import (
    BackendServerError,
    ConfigError,
    ContextOverflow,
    InvalidParams,
    SchemaError,
)
from chinwag.settings import Settings
from chinwag.types import SamplingParams, collect

CONFIGS = Path(__file__).parents[2] / "configs" / "llm"
GREEDY = SamplingParams(temperature=0, max_tokens=12)


def test_a_whole_expression_keeps_its_type_and_text_is_rendered() -> None:
    template = BodyTemplate({"n": "{{ max_tokens }}", "stop": "{{ stop }}",
                             "t": "{{ temperature }}", "note": "max {{ max_tokens }} tokens",
                             "fixed": True,
                             "nested": {"seed": "{{ seed if seed is not none else -1 }}"}})
    body = template.render({"max_tokens": 7, "stop": ("\n", "User:"), "temperature": 0.5,
                            "seed": None})
    assert body == {"n": 7, "stop": ["\n", "User:"], "t": 0.5, "note": "max 7 tokens",
                    "fixed": True, "nested": {"seed": -1}}


def test_a_template_naming_an_unknown_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_new_tokenz"):
        BodyTemplate({"n": "{{ max_new_tokenz }}"}).render({"max_tokens": 1})
    with pytest.raises(ConfigError, match="does not compile"):
        BodyTemplate({"n": "{{ max_tokens "})


def test_dig_follows_keys_and_list_indexes() -> None:
    answer = {"results": [{"text": "hi"}], "choices": [{"text": "a"}, {"text": "b"}]}
    assert dig(answer, "results.0.text") == "hi"
    assert dig(answer, "choices.1.text") == "b"
    with pytest.raises(KeyError, match=r"choices\.2\.text"):
        dig(answer, "choices.2.text")


def test_an_answer_without_text_at_the_path_names_the_path() -> None:
    backend = HttpBackend("http://svc.test", "/gen", text_path="output.text",
                          transport=httpx.MockTransport(
                              lambda r: httpx.Response(200, json={"results": []})))
    with pytest.raises(BackendServerError, match="output"):
        collect(backend.generate("Hi", GREEDY))


def test_the_body_sent_is_the_template_with_the_prompt() -> None:
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"out": {"text": "Hello there\nUser: more"}})

    backend = HttpBackend("http://svc.test", "/gen", prompt_key="input.prompt",
                          text_path="out.text", body={"params": {"n": "{{ max_tokens }}"}},
                          transport=httpx.MockTransport(handler))
    text, done = collect(backend.generate("Hi", GREEDY.with_(stop=("\nUser:",))))
    assert seen == [{"params": {"n": 12}, "input": {"prompt": "Hi"}}]
    assert text == "Hello there" and done.finish_reason == "stop"  # stop applied here too


def test_openais_sampling_fields_are_sent_if_the_template_names_them_else_refused() -> None:
    """presence_penalty goes out where the body names it; logit_bias, named nowhere, is
    refused by name (never dropped silently), as is logprobs (a whole text has none)."""
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"results": [{"text": "Hi"}]})

    backend = HttpBackend("http://svc.test", "/gen", model_id="svc",
                          body={"presence": "{{ presence_penalty }}"},
                          transport=httpx.MockTransport(handler))
    collect(backend.generate("Hi", GREEDY.with_(presence_penalty=0.5)))
    assert seen[0]["presence"] == 0.5
    for field, value in (("logit_bias", {3: -100.0}), ("logprobs", 1)):
        with pytest.raises(InvalidParams) as err:
            backend.generate("Hi", GREEDY.with_(**{field: value}))
        assert err.value.param == field and "svc" in str(err.value)
    assert len(seen) == 1


def example(name: str, host: str) -> HttpBackend:
    config = load_llm_config(CONFIGS / name).model_copy(update={"host": host})
    backend = config.build(Settings())
    assert isinstance(backend, HttpBackend)
    return backend


@pytest.mark.slow
def test_llama_cpp_completion_example(llama_server: Any) -> None:
    backend = example("llamacpp-completion.yaml", llama_server.url)
    text, done = collect(backend.generate("The capital of France is", GREEDY))
    direct = httpx.post(f"{llama_server.url}/completion", json={
        "prompt": "The capital of France is", "n_predict": 12, "temperature": 0,
        "repeat_penalty": 1.1, "repeat_last_n": 64}, timeout=60)
    assert text == direct.json()["content"] and text
    assert done.usage.completion_tokens == 12 and done.finish_reason == "length"
    assert done.usage.prompt_tokens == direct.json()["tokens_evaluated"]
    schema = {"type": "object", "properties": {"a": {"enum": ["x", "y"]}}, "required": ["a"]}
    reply, _ = collect(backend.generate("JSON:", GREEDY.with_(max_tokens=30, json_schema=schema)))
    jsonschema.validate(json.loads(reply), schema)  # enforced by llama.cpp through schema_key
    with pytest.raises(ContextOverflow):
        collect(backend.generate("word " * 5000, GREEDY))


@pytest.mark.slow
def test_textgen_legacy_example_against_chinwag(server: Any) -> None:
    backend = example("textgen-legacy.yaml", server.url)
    text, _ = collect(backend.generate("The capital of France is", GREEDY))
    direct = httpx.post(f"{server.url}/api/v1/generate", json={
        "prompt": "The capital of France is", "max_new_tokens": 12, "temperature": 0,
        "top_p": 0.95, "top_k": 40, "repetition_penalty": 1.1}, timeout=60)
    assert text == direct.json()["results"][0]["text"] and text
    with pytest.raises(SchemaError, match="schema_key"):
        backend.generate("x", GREEDY.with_(json_schema={"type": "object"}))
    with pytest.raises(ContextOverflow):
        collect(backend.generate("word " * 5000, GREEDY))
