"""The engine's step loop on the real model: prefill in chunks, cancellation, scoring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chinwag.engine import Engine, LlamaModel
from chinwag.errors import ContextOverflow, InvalidParams
from chinwag.types import SamplingParams

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0, max_tokens=12, repeat_penalty=1.0)
PROMPT = "The history of the village of Limbo begins long ago, when " * 6


@pytest.fixture(scope="module")
def model(model_path: Path) -> Iterator[LlamaModel]:
    m = LlamaModel(model_path)
    yield m
    m.close()


def greedy(engine: Engine, tokens: list[int]) -> list[int]:
    return list(engine.run(engine.submit(tokens, GREEDY)))


def test_prompt_prefilled_in_small_chunks_gives_the_same_tokens(model: LlamaModel) -> None:
    tokens = model.tokenize(PROMPT)
    assert len(tokens) > 60
    whole = Engine(model, n_ctx=512, n_batch=512, n_threads=2)
    chunked = Engine(model, n_ctx=512, n_batch=16, n_threads=2)
    try:
        assert greedy(whole, tokens) == greedy(chunked, tokens)
    finally:
        whole.close()
        chunked.close()


def test_cancelling_frees_the_sequence_slot(model: LlamaModel) -> None:
    engine = Engine(model, n_ctx=256, n_threads=2)
    try:
        seq = engine.submit(model.tokenize("Once upon a time"), GREEDY.with_(max_tokens=50))
        run = engine.run(seq)
        next(run)
        assert engine._free_ids == []
        run.close()
        assert seq.finish_reason == "cancelled"
        assert engine._free_ids == [0] and engine._active == []
        again = greedy(engine, model.tokenize("Once upon a time"))
        assert len(again) == 12
    finally:
        engine.close()


def test_finish_reasons(model: LlamaModel) -> None:
    engine = Engine(model, n_ctx=256, n_threads=2)
    try:
        seq = engine.submit(model.tokenize("One, two, three,"), GREEDY.with_(max_tokens=3))
        assert len(list(engine.run(seq))) == 3 and seq.finish_reason == "length"
    finally:
        engine.close()


def test_empty_and_oversized_prompts_are_refused(model: LlamaModel) -> None:
    engine = Engine(model, n_ctx=64, n_threads=2)
    try:
        with pytest.raises(InvalidParams):
            engine.submit([], GREEDY)
        with pytest.raises(ContextOverflow):
            engine.submit(model.tokenize("word " * 100), GREEDY)
    finally:
        engine.close()


def test_logprobs_are_log_probabilities(model: LlamaModel) -> None:
    import math

    engine = Engine(model, n_ctx=256, n_batch=8, n_threads=2)
    try:
        tokens = model.tokenize("The capital of France is Paris, and the capital of Italy is Rome.")
        scores = engine.logprobs(tokens, 1)
        assert len(scores) == len(tokens) - 1
        assert all(s <= 0 for s in scores) and all(math.isfinite(s) for s in scores)
        assert engine.logprobs(tokens, 5) == pytest.approx(scores[4:], abs=1e-3)
    finally:
        engine.close()
