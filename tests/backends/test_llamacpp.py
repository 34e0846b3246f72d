"""The llama.cpp backend on the real embedded model (Gemma 3 270M base, Q4_K_M)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chinwag.chat import Chatbot, get_persona
from chinwag.errors import (
    ContextOverflow,
    InvalidParams,
    ModelLoadError,
    OutputInvalid,
    SchemaError,
)
from chinwag.types import Message, SamplingParams, TokenEvent, TokenLogprob, collect

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0, max_tokens=24, repeat_penalty=1.0)


def test_completion_produces_text(llama: Any) -> None:
    events = list(llama.generate("Once upon a time, there was a", GREEDY))
    pieces = [e for e in events if isinstance(e, TokenEvent)]
    text, done = collect(iter(events))
    assert len(pieces) > 3 and len(text.split()) >= 4
    assert done.usage.completion_tokens == 24 and done.finish_reason == "length"
    assert done.usage.prompt_tokens == llama.count_tokens("Once upon a time, there was a")


def test_same_seed_same_text(llama: Any) -> None:
    # cache_prompt off: a reused prefix is computed in another batch shape, which rounds
    # differently (llama.cpp's server documents the same for its cache_prompt)
    params = SamplingParams(temperature=1.0, seed=1234, max_tokens=32, cache_prompt=False)
    first = collect(llama.generate("The weather today is", params))[0]
    second = collect(llama.generate("The weather today is", params))[0]
    other = collect(llama.generate("The weather today is", params.with_(seed=99)))[0]
    assert first == second
    assert first != other


def test_count_tokens_agrees_with_llama_cpp_tokenizer(llama: Any, model_path: Path) -> None:
    from llama_cpp import Llama

    reference = Llama(str(model_path), vocab_only=True, verbose=False)
    for text in ["Hello, world!", "Bertha: Well met, traveller 🧙‍♀️!", "  spaces\n\nand lines",
                 "naïve café façade", ""]:
        assert llama.count_tokens(text) == len(reference.tokenize(text.encode())), text


def test_choose_picks_paris(llama: Any) -> None:
    choice = llama.choose_continuation("The capital of France is", [" London", " Paris", " Rome"])
    assert choice.option == " Paris" and choice.index == 1
    assert choice.scores[1] == max(choice.scores) and all(s < 0 for s in choice.scores)


def test_choose_from_messages_scores_the_reply(llama: Any) -> None:
    messages = [Message("user", "What is the capital of France?")]
    choice = llama.choose(messages, [" The capital of France is Paris.",
                                     " The capital of France is a banana."])
    assert choice.index == 0


def test_choose_without_options_is_invalid(llama: Any) -> None:
    with pytest.raises(InvalidParams):
        llama.choose_continuation("x", [])


SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
     "required": ["name", "age"]},
    {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]},
     "minItems": 1, "maxItems": 3},
    {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 30},
        "facts": {"type": "array", "items": {"type": "object", "properties": {
            "label": {"type": "string", "maxLength": 20}, "ok": {"type": "boolean"}},
            "required": ["label", "ok"]}, "maxItems": 2}},
     "required": ["city", "facts"]},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=["object", "enum-array", "nested"])
def test_json_schema_output_validates(llama: Any, schema: dict[str, Any]) -> None:
    import json

    params = SamplingParams(temperature=0.7, seed=7, max_tokens=200, json_schema=schema)
    text, done = collect(llama.generate("A JSON document describing a person in Paris:\n",
                                        params))
    assert done.finish_reason == "stop", text
    jsonschema.validate(json.loads(text), schema)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_integer_bounds_are_enforced(llama: Any, seed: int) -> None:
    """Measured before: {"n": 0}, {"n": 10}, {"n": 2} for seeds 1-3 (the bounds dropped)."""
    import json

    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 200,
                                                      "maximum": 205}}, "required": ["n"]}
    params = SamplingParams(temperature=0.8, seed=seed, max_tokens=40, json_schema=schema)
    text, done = collect(llama.generate("A number:\n", params))
    assert done.finish_reason == "stop"
    assert 200 <= json.loads(text)["n"] <= 205


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_what_the_grammar_cannot_enforce_is_checked_never_returned_invalid(
        llama: Any, seed: int) -> None:
    """Number bounds are not in the grammar: the text is checked and generated again; what
    comes back validates, or the error carries the text."""
    import json

    schema = {"type": "object", "properties": {"x": {"type": "number", "minimum": 0.25,
                                                      "maximum": 0.75}}, "required": ["x"]}
    params = SamplingParams(temperature=0.8, seed=seed, max_tokens=120, json_schema=schema)
    try:
        text, done = collect(llama.generate("A fraction between a quarter and three "
                                            "quarters, as JSON:\n", params))
    except OutputInvalid as e:
        assert e.text and e.problem and e.text[:20] in str(e)
        return
    if done.finish_reason == "length":  # max_tokens ran out while generating again: cut, and
        with pytest.raises(ValueError):  # said so, never a whole document that is invalid
            json.loads(text)
        return
    assert done.finish_reason == "stop"
    jsonschema.validate(json.loads(text), schema)


def test_an_answer_that_never_validates_is_an_error_with_its_text(llama: Any) -> None:
    """Greedy (one attempt) and a multipleOf the grammar cannot enforce (the model writes
    1000000000000000): the error carries the text."""
    schema = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 99_991}},
              "required": ["n"]}
    params = SamplingParams(temperature=0, max_tokens=40, json_schema=schema)
    with pytest.raises(OutputInvalid) as caught:
        collect(llama.generate("A number:\n", params))
    assert caught.value.text and caught.value.text[:10] in str(caught.value)
    assert "multiple of" in caught.value.problem


def test_a_finished_stream_that_fails_its_schema_raises() -> None:
    from chinwag.backends.llamacpp import _checked
    from chinwag.types import Done, TokenEvent, Usage

    schema = {"type": "object", "required": ["b"]}
    good = list(_checked(iter([TokenEvent('{"b": 1}'), Done("stop", Usage(1, 1))]), schema))
    assert len(good) == 2
    cut = list(_checked(iter([TokenEvent('{"a'), Done("length", Usage(1, 1))]), schema))
    assert cut[-1].finish_reason == "length"  # type: ignore[union-attr]
    with pytest.raises(OutputInvalid, match="'b' is a required property"):
        list(_checked(iter([TokenEvent('{"a": 1}'), Done("stop", Usage(1, 1))]), schema))


def test_json_cut_by_max_tokens_comes_back_as_it_is(llama: Any) -> None:
    schema = {"type": "object", "properties": {"story": {"type": "string"}},
              "required": ["story"]}
    params = SamplingParams(temperature=0.8, seed=1, max_tokens=6, json_schema=schema)
    text, done = collect(llama.generate("A long story as JSON:\n", params))
    assert done.finish_reason == "length" and text.startswith("{")


def test_invalid_json_schema_is_schema_error(llama: Any) -> None:
    with pytest.raises(SchemaError):
        llama.generate("x", SamplingParams(json_schema={"type": "no-such-type"}))


def test_prompt_longer_than_context_is_context_overflow(llama: Any) -> None:
    prompt = "word " * 3000
    with pytest.raises(ContextOverflow) as err:
        llama.generate(prompt, GREEDY)
    assert err.value.n_ctx == 2048
    assert err.value.prompt_tokens == llama.count_tokens(prompt) > 2048
    assert str(err.value.prompt_tokens) in str(err.value) and "2048" in str(err.value)


def test_generation_stops_at_the_end_of_the_context(model_path: Path) -> None:
    from chinwag.backends.llamacpp import LlamaCppBackend

    small = LlamaCppBackend(model_path, n_ctx=32, n_threads=2)
    try:
        prompt = "Count with me: one, two, three,"
        _, done = collect(small.generate(prompt, GREEDY.with_(max_tokens=200)))
        assert done.finish_reason == "length"
        assert done.usage.prompt_tokens + done.usage.completion_tokens <= 32
    finally:
        small.close()


def test_stop_string_ends_generation_and_is_not_included(llama: Any) -> None:
    text, done = collect(llama.generate("1, 2, 3, 4,", GREEDY.with_(stop=(" 7",))))
    assert done.finish_reason == "stop"
    assert " 7" not in text and "6" in text


def test_closing_a_stream_early_frees_the_engine(llama: Any) -> None:
    stream = llama.generate("Once upon a time", GREEDY.with_(max_tokens=100))
    next(stream)
    stream.close()
    text, _ = collect(llama.generate("Once upon a time", GREEDY.with_(max_tokens=5)))
    assert text


def test_chat_turn_answers_in_persona_and_stops_before_users_next_line(llama: Any) -> None:
    bot = Chatbot(llama, get_persona("villager"), temperature=0, repeat_penalty=1.0)
    reply = "".join(bot.send("Hello! What is the name of this village?"))
    assert reply and "\nTraveller:" not in reply and "Traveller:" not in reply
    assert not reply.startswith(" ") and "Bertha:" not in reply
    assert bot.last is not None and bot.last.finish_reason == "stop"
    second = "".join(bot.send("And who are you?"))
    assert second and "Traveller:" not in second
    assert len(bot.history) == 4


def test_models_info(llama: Any) -> None:
    info = llama.info()
    assert info.name == "gemma-3-270m-q4_k_m" and info.chat_format == "transcript"
    assert 200e6 < info.parameters < 300e6 and info.n_ctx == 2048
    assert info.extra["architecture"] == "gemma3"


def test_info_says_the_model_runs_on_the_cpu_without_gpu_offload(llama: Any) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        assert llama.info().extra["device"].startswith("GPU (")
    else:
        assert llama.info().extra["device"] == "CPU"


def test_not_a_gguf_is_refused_before_llama_cpp(tmp_path: Path) -> None:
    from chinwag.backends.llamacpp import LlamaCppBackend

    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        LlamaCppBackend(bad)


def test_truncated_gguf_gives_model_load_error(tmp_path: Path, model_path: Path) -> None:
    from chinwag.backends.llamacpp import LlamaCppBackend

    bad = tmp_path / "cut.gguf"
    with model_path.open("rb") as f:
        bad.write_bytes(f.read(100_000))
    with pytest.raises(ModelLoadError, match="could not load"):
        LlamaCppBackend(bad)


# -- OpenAI's logprobs and logit_bias ------------------------------------------------------------

def records_of(events: list[Any]) -> list[TokenLogprob]:
    return [r for e in events if isinstance(e, TokenEvent) for r in e.logprobs]


def test_greedy_tokens_logprobs_are_the_best_of_their_alternatives(llama: Any) -> None:
    """Greedy without a penalty takes the likeliest token: its log-probability is the first
    of its alternatives, which are sorted; one record per generated token, whose bytes make
    the text."""
    events = list(llama.generate("The capital of France is",
                                 GREEDY.with_(max_tokens=12, logprobs=3)))
    records = records_of(events)
    text, done = collect(iter(events))
    assert len(records) == done.usage.completion_tokens == 12
    for r in records:
        alternatives = [t.logprob for t in r.top]
        assert len(alternatives) == 3 and alternatives == sorted(alternatives, reverse=True)
        assert (r.token, r.logprob) == (r.top[0].token, r.top[0].logprob) and r.logprob < 0
    assert bytes(b for r in records for b in r.bytes).decode() == text


def test_no_logprobs_unless_asked(llama: Any) -> None:
    assert not records_of(list(llama.generate("The capital of France is", GREEDY)))


def test_logit_bias_against_the_greedy_first_token_changes_it(llama: Any) -> None:
    """-100 on the token greedy choice starts with: another comes first; the record still
    reports the model's own distribution, where the banned token is the likeliest."""
    prompt = "The capital of France is"
    first = records_of(list(llama.generate(prompt, GREEDY.with_(max_tokens=2, logprobs=1))))[0]
    banned = llama.tokenize(first.token)[-1]  # after the BOS token
    events = list(llama.generate(prompt, GREEDY.with_(max_tokens=2, logprobs=1,
                                                      logit_bias={banned: -100.0})))
    now = records_of(events)[0]
    assert now.token != first.token
    assert now.top[0].token == first.token and now.logprob < first.logprob


def test_a_stop_string_drops_the_records_of_the_tokens_it_cut(llama: Any) -> None:
    prompt = "1, 2, 3, 4,"
    events = list(llama.generate(prompt, GREEDY.with_(stop=(" 7",), logprobs=0)))
    text, done = collect(iter(events))
    records = records_of(events)
    assert done.finish_reason == "stop" and " 7" not in text
    assert "".join(r.token for r in records) == text  # each token before the stop, once
    assert len(records) < done.usage.completion_tokens


@pytest.mark.parametrize("schema", [
    SCHEMAS[0],  # enforced by the grammar: streamed and checked after
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}},
     "required": ["n"]},  # not wholly enforced: held back, checked, one event
], ids=["grammar", "checked"])
def test_json_schema_answers_carry_their_tokens_records(llama: Any,
                                                        schema: dict[str, Any]) -> None:
    events = list(llama.generate("A person as JSON:", GREEDY.with_(
        max_tokens=60, json_schema=schema, logprobs=1)))
    text, done = collect(iter(events))
    records = records_of(events)
    jsonschema.validate(json.loads(text), schema)
    assert len(records) == done.usage.completion_tokens
    assert bytes(b for r in records for b in r.bytes).decode() == text
