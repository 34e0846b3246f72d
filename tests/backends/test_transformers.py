"""The transformers backend on a tiny random-weight model built in-process (``tiny_hf_model``),
and once (slow) on the embedded Gemma 3 GGUF through transformers' GGUF loader."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chinwag.errors import (
    BackendError,
    ConfigError,
    ContextOverflow,
    InvalidParams,
    ModelLoadError,
    ModelNotFound,
    SchemaError,
)
from chinwag.types import Done, Message, SamplingParams, TokenEvent, collect

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from chinwag.backends.transformers import TransformersBackend  # noqa: E402

GREEDY = SamplingParams(temperature=0, max_tokens=24, repeat_penalty=1.0)
# every token of the vocabulary can be drawn: different seeds give different text
WIDE = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, max_tokens=24)
PROMPT = "Once upon a time, there was a"


@pytest.fixture(scope="module")
def hf(tiny_hf_model: Path) -> Iterator[TransformersBackend]:
    backend = TransformersBackend(tiny_hf_model, n_threads=2)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def reference(tiny_hf_model: Path) -> tuple[Any, Any]:
    """The same model and tokenizer, loaded by transformers directly."""
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_hf_model,
                                                              local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_hf_model, local_files_only=True)
    return model.eval(), tokenizer


def test_stream_gives_pieces_then_one_done_with_usage(hf: TransformersBackend) -> None:
    events = list(hf.generate(PROMPT, GREEDY))
    pieces = [e for e in events if isinstance(e, TokenEvent)]
    assert len(pieces) >= 3 and all(p.text for p in pieces)
    assert isinstance(events[-1], Done) and not any(isinstance(e, Done) for e in events[:-1])
    done = events[-1]
    assert done.usage.prompt_tokens == hf.count_tokens(PROMPT)
    assert done.usage.completion_tokens == 24 and done.finish_reason == "length"


def test_greedy_equals_transformers_generate(hf: TransformersBackend,
                                             reference: tuple[Any, Any]) -> None:
    model, tokenizer = reference
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=24, do_sample=False, repetition_penalty=1.0)
    new = [t for t in out[0, ids.shape[1]:].tolist() if t != tokenizer.eos_token_id]
    expected = tokenizer.decode(new, skip_special_tokens=True,
                                clean_up_tokenization_spaces=False)
    text, done = collect(hf.generate(PROMPT, GREEDY))
    assert text == expected and len(expected) > 5
    assert done.usage.completion_tokens == len(new)
    assert collect(hf.generate(PROMPT, GREEDY))[0] == text


def test_same_seed_same_text(hf: TransformersBackend) -> None:
    first = collect(hf.generate(PROMPT, WIDE.with_(seed=1234)))[0]
    second = collect(hf.generate(PROMPT, WIDE.with_(seed=1234)))[0]
    other = collect(hf.generate(PROMPT, WIDE.with_(seed=99)))[0]
    assert first == second and first != other


def test_sampling_settings_narrow_the_choice(hf: TransformersBackend) -> None:
    # top_k=1 leaves only the most likely token: sampling at any temperature is greedy
    greedy = collect(hf.generate(PROMPT, GREEDY))[0]
    narrowed = collect(hf.generate(PROMPT, WIDE.with_(top_k=1, seed=5, repeat_penalty=1.0)))[0]
    assert narrowed == greedy


def test_stop_string_ends_generation_and_is_not_included(hf: TransformersBackend) -> None:
    full, _ = collect(hf.generate(PROMPT, GREEDY.with_(max_tokens=40)))
    at = next(i for i in range(4, len(full) - 3) if "\ufffd" not in full[i:i + 3])
    stop = full[at:at + 3]
    text, done = collect(hf.generate(PROMPT, GREEDY.with_(max_tokens=40, stop=(stop,))))
    assert text == full[:full.find(stop)]
    assert done.finish_reason == "stop" and done.usage.completion_tokens < 40


def test_logit_bias_and_openais_penalties_follow_llama_cpps_arithmetic() -> None:
    """Bias first, then over the window (1, 2, 2; token 3 has left it): the repeat penalty,
    then count * frequency + presence subtracted, as llama.cpp's penalties sampler."""
    from chinwag.backends.transformers import sample_token

    logits = torch.tensor([1.0, 4.0, -3.0, 5.0])
    params = SamplingParams(temperature=0, repeat_penalty=2.0, repeat_last_n=3,
                            frequency_penalty=0.5, presence_penalty=0.25,
                            logit_bias={3: -100.0, 0: -0.5})
    assert sample_token(logits, params, [3, 1, 2, 2], torch.Generator()) == 1
    assert logits.tolist() == [1.0 - 0.5, 4.0 / 2 - 0.75, -3.0 * 2 - 1.25, 5.0 - 100.0]
    with pytest.raises(InvalidParams) as err:
        sample_token(torch.zeros(4), params.with_(logit_bias={4: 1.0}), [], torch.Generator())
    assert err.value.param == "logit_bias"


def test_logprobs_are_refused_by_name(hf: TransformersBackend) -> None:
    with pytest.raises(InvalidParams) as err:
        hf.generate(PROMPT, GREEDY.with_(logprobs=1))
    assert err.value.param == "logprobs"


def test_max_tokens_gives_length(hf: TransformersBackend) -> None:
    _, done = collect(hf.generate(PROMPT, GREEDY.with_(max_tokens=3)))
    assert done.finish_reason == "length" and done.usage.completion_tokens == 3


def test_prompt_that_fills_the_context_is_context_overflow(hf: TransformersBackend) -> None:
    prompt = "word " * 600
    with pytest.raises(ContextOverflow) as err:
        hf.generate(prompt, GREEDY)
    assert err.value.n_ctx == 512 == hf.context_length
    assert err.value.prompt_tokens == hf.count_tokens(prompt) > 512


def test_reply_is_cut_at_the_end_of_the_context(tiny_hf_model: Path) -> None:
    small = TransformersBackend(tiny_hf_model, context_length=16)
    _, done = collect(small.generate(PROMPT, GREEDY.with_(max_tokens=200)))
    assert done.finish_reason == "length"
    assert done.usage.prompt_tokens + done.usage.completion_tokens == 16


def test_closing_a_stream_early_stops_it_and_the_next_call_works(
        hf: TransformersBackend) -> None:
    calls: list[int] = []
    hook = hf._model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        stream = hf.generate(PROMPT, GREEDY.with_(max_tokens=100))
        next(stream)
        read = len(calls)
        stream.close()
        assert 1 <= len(calls) == read < 100  # no forward pass after the stream was closed
    finally:
        hook.remove()
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(
        collect(hf.generate(PROMPT, GREEDY.with_(max_tokens=5)))[0]))
    worker.start()
    worker.join(timeout=30)
    assert result and result[0], "the closed stream kept the backend busy"


def test_chat_renders_with_the_tokenizers_template(hf: TransformersBackend,
                                                   reference: tuple[Any, Any]) -> None:
    assert hf.chat_format.name == "model-template"
    assert hf.format_for("transcript").name == "model-template"  # the model's own wins
    prompt = hf.render([Message("user", "Hi")])
    assert prompt.text == "<s><|user|>\nHi</s>\n<|assistant|>\n" and "</s>" in prompt.stop
    _, done = collect(hf.chat([Message("user", "Hi")], GREEDY.with_(max_tokens=4)))
    # the template's BOS text is not doubled by the tokenizer's own BOS
    once = reference[1](prompt.text, add_special_tokens=False)["input_ids"]
    bos = reference[1].bos_token_id
    assert once[0] == bos and once.count(bos) == 1
    assert done.usage.prompt_tokens == hf.count_tokens(prompt.text) == len(once)


def test_chat_format_can_be_forced(tiny_hf_model: Path) -> None:
    forced = TransformersBackend(tiny_hf_model, chat_format="transcript")
    assert forced.chat_format.name == "transcript"


def test_count_tokens_is_the_tokenizers_count(hf: TransformersBackend,
                                              reference: tuple[Any, Any]) -> None:
    _, tokenizer = reference
    for text in ["Hello, world!", "naïve café 🧙", "  spaces\n\nand lines", ""]:
        assert hf.count_tokens(text) == len(tokenizer(text)["input_ids"]), text
    assert hf.count_tokens("Hi") == len(tokenizer("Hi", add_special_tokens=False)["input_ids"]) + 1


def _torch_score(reference: tuple[Any, Any], prompt: str, option: str) -> float:
    model, tokenizer = reference  # the rendered prompt starts with BOS: add no other
    base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + option, add_special_tokens=False)["input_ids"]
    start = next(i for i, (a, b) in enumerate(zip(base, full, strict=False)) if a != b) \
        if full[:len(base)] != base else len(base)
    with torch.inference_mode():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), dim=-1)
    return math.fsum(float(logp[i - 1, full[i]]) for i in range(start, len(full)))


def test_choose_picks_the_most_likely_option(hf: TransformersBackend,
                                             reference: tuple[Any, Any]) -> None:
    messages = [Message("user", "What is the capital of France?")]
    options = [" Paris", " Rome", " a little village", "red"]
    choice = hf.choose(messages, options)
    prompt = hf.render(messages).text
    expected = [_torch_score(reference, prompt, o) for o in options]
    assert choice.scores == pytest.approx(expected, abs=1e-4)
    assert choice.index == expected.index(max(expected)) and choice.option == options[choice.index]
    assert choice.logprob == max(choice.scores) and all(s < 0 for s in choice.scores)


def test_choose_without_options_is_invalid(hf: TransformersBackend) -> None:
    with pytest.raises(InvalidParams):
        hf.choose([Message("user", "Hi")], [])


def test_choose_that_does_not_fit_is_context_overflow(hf: TransformersBackend) -> None:
    with pytest.raises(ContextOverflow):
        hf.choose([Message("user", "word " * 600)], ["yes", "no"])


SCHEMAS = [
    {"type": "object", "properties": {
        "color": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"},
        "name": {"type": "string", "maxLength": 8}},
     "required": ["color", "ok", "name"], "additionalProperties": False},
    {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]},
     "minItems": 1, "maxItems": 3},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=["object", "enum-array"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_json_schema_output_validates(hf: TransformersBackend, schema: dict[str, Any],
                                      seed: int) -> None:
    # the tiny model's weights are random: without the grammar this would be byte soup
    params = SamplingParams(temperature=1.0, seed=seed, max_tokens=120, json_schema=schema)
    text, done = collect(hf.generate("A JSON document:\n", params))
    assert done.finish_reason == "stop", text
    jsonschema.validate(json.loads(text), schema)
    assert hf.capabilities.json_schema


def test_invalid_json_schema_is_schema_error(hf: TransformersBackend) -> None:
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        hf.generate("x", SamplingParams(json_schema={"type": "no-such-type"}))


def test_json_schema_beyond_the_grammar_is_schema_error(hf: TransformersBackend) -> None:
    with pytest.raises(SchemaError, match="not supported"):
        hf.generate("x", SamplingParams(json_schema={"type": "string", "pattern": "(?<=a)b"}))


def test_info_describes_the_model(hf: TransformersBackend, tiny_hf_model: Path) -> None:
    info = hf.info()
    assert info.name == tiny_hf_model.name and info.path == str(tiny_hf_model)
    assert info.n_ctx == info.n_ctx_train == 512 and info.chat_format == "model-template"
    assert info.parameters is not None and 50_000 < info.parameters < 500_000
    assert info.size_bytes is not None and info.size_bytes > 4 * 50_000
    assert info.extra["architecture"] == "llama" and info.extra["dtype"] == "float32"
    assert info.extra["threads"] == 2


def test_close_is_idempotent_and_generation_afterwards_fails(tiny_hf_model: Path) -> None:
    backend = TransformersBackend(tiny_hf_model)
    backend.close()
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.generate(PROMPT, GREEDY)


def test_missing_folder_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no model folder"):
        TransformersBackend(tmp_path / "no-such-model")


def test_hub_id_not_in_the_cache_is_model_not_found(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="hf download chinwag-tests/no-such-model"):
        TransformersBackend("chinwag-tests/no-such-model")


def test_missing_gguf_file_is_model_not_found(tiny_hf_model: Path) -> None:
    with pytest.raises(ModelNotFound, match="no GGUF file"):
        TransformersBackend(tiny_hf_model, gguf_file="nope.gguf")


def test_folder_with_a_broken_config_is_model_load_error(tiny_hf_model: Path,
                                                         tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_hf_model, broken)
    (broken / "config.json").write_text("{ this is not json")
    with pytest.raises(ModelLoadError, match="could not load"):
        TransformersBackend(broken)


def test_unknown_dtype_is_config_error(tiny_hf_model: Path) -> None:
    with pytest.raises(ConfigError, match="dtype"):
        TransformersBackend(tiny_hf_model, dtype="int3")


def test_without_transformers_installed_says_what_to_install(
        tiny_hf_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    with pytest.raises(ConfigError, match=re.escape("pip install 'chinwag[transformers]'")):
        TransformersBackend(tiny_hf_model)


def test_importing_the_module_does_not_import_torch() -> None:
    code = ("import sys, chinwag.backends, chinwag.backends.transformers; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_embedded_gguf_loads_and_generates(model_path: Path) -> None:
    try:
        backend = TransformersBackend(model_path.parent, gguf_file=model_path.name, n_threads=2,
                                      context_length=2048)
    except ModelLoadError as e:
        pytest.skip(f"transformers cannot load the embedded GGUF: {e}")
    try:
        text, done = collect(backend.generate("The capital of France is",
                                              GREEDY.with_(max_tokens=6)))
        assert text.strip() and done.finish_reason == "length"
        assert done.usage.completion_tokens == 6
        info = backend.info()
        assert info.chat_format == "transcript" and info.extra["architecture"].startswith("gemma3")
        assert 200e6 < (info.parameters or 0) < 300e6
        choice = backend.choose_continuation("The capital of France is",
                                             [" London", " Paris", " Rome"])
        assert choice.option == " Paris"
    finally:
        backend.close()
