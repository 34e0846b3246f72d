"""The engine's step loop on the real model: prefill in chunks, batching, failures,
cancellation, scoring."""

from __future__ import annotations

import threading
from pathlib import Path

import llama_cpp
import pytest

from chinwag.engine import Engine, LlamaModel
from chinwag.errors import BackendError, ContextOverflow, InvalidParams
from support.engine import GREEDY, Consumer, greedy
from support.engine import assert_same_up_to_a_near_tie as same_up_to_a_near_tie

pytestmark = pytest.mark.slow

PROMPT = "The history of the village of Limbo begins long ago, when " * 6


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
        seq = engine.submit(model.tokenize("Once upon a time"), GREEDY.with_(max_tokens=240))
        run = engine.run(seq)
        next(run)
        assert engine.slots.free == ()
        run.close()
        assert seq.finish_reason == "cancelled"
        assert engine.wait_idle(60)
        assert engine.slots.free == (0,) and engine.active == ()
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


PROMPTS = ["Once upon a time", "The capital of France is", "1, 2, 3, 4,",
           "My favourite food is", "In the year 1850,", "The old mill of Limbo",
           "Dear diary, today", "Q: What is a goat?\nA:"]


def test_batched_greedy_tokens_match_alone_up_to_near_ties(model: LlamaModel) -> None:
    """Eight sequences batched give each the greedy tokens it gets alone, except where
    llama.cpp's CPU kernels round differently for another batch shape (its tiled matmuls for
    Q5_0/Q8_0 weights depend on the number of tokens): at the first token that differs, both
    candidates must be a near tie (< 0.5 nats apart when scored alone; scoring itself runs
    in another batch shape, so it rounds differently too). A sequence mixed up
    with another one, or a wrong position or logits row, fails this by far."""
    engine = Engine(model, n_ctx=256, n_threads=2, n_seq_max=8)
    try:
        alone = [greedy(engine, model.tokenize(p)) for p in PROMPTS]
        together: list[list[int]] = [[] for _ in PROMPTS]
        steps_before = engine.steps
        barrier = threading.Barrier(len(PROMPTS))

        def one(i: int) -> None:
            seq = engine.submit(model.tokenize(PROMPTS[i]), GREEDY)
            barrier.wait()
            together[i] = list(engine.run(seq))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # batched: far fewer decode calls than one per token per sequence
        assert engine.steps - steps_before < sum(len(t) + 1 for t in alone) / 2
        assert engine.wait_idle(60)
        assert sorted(engine.slots.free) == list(range(8)) and engine.active == ()
        for prompt, a, b in zip(PROMPTS, alone, together, strict=True):
            same_up_to_a_near_tie(engine, model.tokenize(prompt), a, b)
    finally:
        engine.close()


def test_a_cancelled_sequence_leaves_the_batch_and_the_others_go_on(model: LlamaModel) -> None:
    engine = Engine(model, n_ctx=256, n_threads=2, n_seq_max=2)
    try:
        expected = greedy(engine, model.tokenize(PROMPTS[0]))
        out: list[int] = []
        started = threading.Event()

        def steady() -> None:
            for token in engine.run(engine.submit(model.tokenize(PROMPTS[0]), GREEDY)):
                started.set()
                out.append(token)

        thread = threading.Thread(target=steady)
        thread.start()
        assert started.wait(30)
        quitter = engine.run(engine.submit(model.tokenize(PROMPTS[1]),
                                           GREEDY.with_(max_tokens=200)))
        next(quitter)
        quitter.close()
        thread.join(60)
        same_up_to_a_near_tie(engine, model.tokenize(PROMPTS[0]), expected, out)
        third = greedy(engine, model.tokenize(PROMPTS[2]))  # both slots free again
        assert engine.wait_idle(60)
        assert len(third) == 12 and sorted(engine.slots.free) == [0, 1]
    finally:
        engine.close()


def test_a_returning_prompt_reuses_the_slots_cells_and_continues_as_recomputed(
        model: LlamaModel) -> None:
    """Turn 2 of a conversation shares turn 1's prompt and answer: only the new tokens are
    computed, and the answer is what a fresh engine computing everything gives."""
    engine = Engine(model, n_ctx=512, n_threads=2, n_seq_max=2)
    fresh = Engine(model, n_ctx=512, n_threads=2, n_seq_max=1)
    try:
        first = model.tokenize(PROMPT)
        answer = greedy(engine, first)
        second = first + answer + model.tokenize(" And then,", add_special=False)
        seq = engine.submit(second, GREEDY)
        reused = list(engine.run(seq))
        assert seq.n_cached >= len(first) + len(answer) - 1
        recomputed_seq = fresh.submit(second, GREEDY)
        recomputed = list(fresh.run(recomputed_seq))
        assert recomputed_seq.n_cached == 0
        same_up_to_a_near_tie(fresh, second, recomputed, reused)
        other = engine.submit(model.tokenize("Something else entirely"), GREEDY)
        list(engine.run(other))
        assert other.n_cached <= 1  # a different prompt reuses nothing (BOS at most)
    finally:
        engine.close()
        fresh.close()


def test_pieces_are_right_when_many_threads_detokenize_at_once(model_path: Path) -> None:
    """Eight streams decode their tokens in eight threads: no piece lands in another's cache
    entry (a shared buffer once turned every "2" into "1" for the rest of the process)."""
    fresh = LlamaModel(model_path)
    reference = LlamaModel(model_path)
    try:
        tokens = list(range(200, 2200))
        barrier = threading.Barrier(8)

        def work(offset: int) -> None:
            barrier.wait()
            for t in tokens[offset::8]:
                fresh.piece(t)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [fresh.piece(t) for t in tokens] == [reference.piece(t) for t in tokens]
    finally:
        fresh.close()
        reference.close()


def streaming(engine: Engine, model: LlamaModel, *,
              background: bool) -> tuple[threading.Thread, list[int]]:
    """A 200-token generation read in a thread, once it has three tokens: the thread and the
    engine step at which each token came. 200 tokens, so that it is still streaming when what
    the tests start beside it has been computed, even on a busy machine."""
    steps_of_tokens: list[int] = []
    joined = threading.Event()

    def streamer() -> None:
        seq = engine.submit(model.tokenize("Once upon a time"), GREEDY.with_(max_tokens=200),
                            background=background)
        for _ in engine.run(seq):
            steps_of_tokens.append(engine.steps)
            if len(steps_of_tokens) == 3:
                joined.set()

    thread = threading.Thread(target=streamer)
    thread.start()
    assert joined.wait(60)
    return thread, steps_of_tokens


def test_a_long_newcomer_is_prefilled_in_chunks_between_the_others_tokens(
        model: LlamaModel) -> None:
    """While one sequence streams, a 1,000-token prompt joins: it is computed at most
    ``prefill_chunk`` tokens a step, and the streaming sequence gets a token at every one of
    those steps instead of waiting for the whole prompt."""
    engine = Engine(model, n_ctx=2048, n_threads=2, n_seq_max=2, prefill_chunk=128)
    try:
        thread, steps_of_tokens = streaming(engine, model, background=False)
        long_prompt = model.tokenize(PROMPT * 14)[:1000]
        newcomer = engine.submit(long_prompt, GREEDY.with_(max_tokens=2))
        admitted_at = engine.steps
        out = engine.run(newcomer)
        next(out)
        first_token_at = engine.steps
        out.close()
        thread.join(120)
        assert len(steps_of_tokens) == 200
        assert steps_of_tokens[-1] > first_token_at  # it was streaming all along
        prefill_steps = first_token_at - admitted_at
        assert prefill_steps >= 1000 // 128  # chunks of at most 128 tokens
        during = [s for s in steps_of_tokens if admitted_at < s <= first_token_at]
        # the streamer got a token at (nearly) every step of the newcomer's prefill
        assert len(during) >= prefill_steps - 1, (during, admitted_at, first_token_at)
    finally:
        engine.close()


def test_background_work_sits_out_the_steps_of_a_live_prompt(model: LlamaModel) -> None:
    """A background sequence (a server batch's line) streams; a live 1,000-token prompt
    joins: the background one gets no token while the live prompt is computed (at most one,
    in a step that ran before the live one was admitted), then goes on."""
    engine = Engine(model, n_ctx=2048, n_threads=2, n_seq_max=2, prefill_chunk=128)
    try:
        thread, steps_of_tokens = streaming(engine, model, background=True)
        live = engine.submit(model.tokenize(PROMPT * 14)[:1000], GREEDY.with_(max_tokens=2))
        submitted_at = engine.steps
        out = engine.run(live)
        next(out)
        first_token_at = engine.steps
        out.close()
        thread.join(120)
        assert len(steps_of_tokens) == 200
        assert steps_of_tokens[-1] > first_token_at  # it went on afterwards
        during = [s for s in steps_of_tokens if submitted_at < s <= first_token_at]
        assert first_token_at - submitted_at >= 2  # the prompt took steps (n_batch 512)
        assert len(during) <= 1, (during, submitted_at, first_token_at)
    finally:
        engine.close()


# -- failures and cancellation ---------------------------------------------------------------------

def test_a_failed_step_fails_every_generation_in_it(model: LlamaModel,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """llama_decode fails while two generations decode together: both consumers get the
    BackendError (not a quiet end that looks like a finished answer), their slots' cells are
    dropped, and the engine serves the next generation as before."""
    engine = Engine(model, n_ctx=256, n_threads=2, n_seq_max=2)
    real_decode = llama_cpp.llama_decode
    armed = threading.Event()

    def decode(ctx: object, batch: object) -> int:
        if armed.is_set() and batch.n_tokens == 2:  # type: ignore[attr-defined]
            armed.clear()
            return -3  # llama.cpp: the graph could not be computed
        return int(real_decode(ctx, batch))

    try:
        before = greedy(engine, model.tokenize(PROMPTS[0]))
        monkeypatch.setattr(llama_cpp, "llama_decode", decode)
        long = GREEDY.with_(max_tokens=200)
        a = Consumer(engine, model.tokenize(PROMPTS[0]), long)
        b = Consumer(engine, model.tokenize(PROMPTS[1]), long)
        assert a.started.wait(60) and b.started.wait(60)
        armed.set()
        a.join()
        b.join()
        for c in (a, b):
            assert isinstance(c.error, BackendError) and "code -3" in str(c.error)
            assert c.gen.finish_reason is None and c.gen.error is not None
            assert len(c.tokens) < 200
        assert engine.timing.failed == 2 and engine.timing.cancelled == 0
        assert engine.wait_idle(60)
        assert sorted(engine.slots.free) == [0, 1]
        assert all(engine.slots.kept(s) == [] for s in (0, 1))  # failed cells dropped
        assert greedy(engine, model.tokenize(PROMPTS[0])) == before
    finally:
        engine.close()


def test_a_defect_in_a_step_is_an_error_for_its_generations_not_a_hang(
        model: LlamaModel, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Something other than llama_decode raises in a step (here the sampler): the step
    thread survives, the step's generations end with a BackendError naming the exception
    (their readers used to wait forever), the traceback is logged, and the next generation
    is served."""
    from chinwag.engine.sampler import Sampler

    engine = Engine(model, n_ctx=256, n_threads=2, n_seq_max=2)
    real_sample = Sampler.sample
    armed = threading.Event()

    def sample(self: Sampler, ctx: object, index: int) -> int:
        if armed.is_set():
            armed.clear()
            raise ValueError("could not broadcast input array")
        return real_sample(self, ctx, index)

    try:
        before = greedy(engine, model.tokenize(PROMPTS[0]))
        monkeypatch.setattr(Sampler, "sample", sample)
        armed.set()
        with pytest.raises(BackendError, match="ValueError: could not broadcast"):
            greedy(engine, model.tokenize(PROMPTS[0]))
        assert "an engine step failed" in caplog.text
        assert engine.wait_idle(60)
        assert greedy(engine, model.tokenize(PROMPTS[0])) == before
    finally:
        engine.close()


def test_cancel_from_another_thread_stops_a_generation_waiting_for_a_slot(
        model: LlamaModel) -> None:
    engine = Engine(model, n_ctx=256, n_threads=2, n_seq_max=1)
    try:
        running = Consumer(engine, model.tokenize(PROMPTS[0]), GREEDY.with_(max_tokens=220))
        assert running.started.wait(60)
        waiting = Consumer(engine, model.tokenize(PROMPTS[1]), GREEDY)
        engine.cancel(waiting.gen)
        waiting.join()
        assert waiting.error is None and waiting.tokens == []
        assert waiting.gen.finish_reason == "cancelled" and not waiting.gen.admitted
        engine.cancel(running.gen)  # and a running one, at the next step
        running.join()
        assert running.gen.finish_reason == "cancelled" and len(running.tokens) < 220
        assert engine.timing.admitted == 1 and engine.timing.cancelled == 2
        assert engine.wait_idle(60) and engine.slots.free == (0,)
    finally:
        engine.close()


def test_closing_the_engine_ends_its_generations_with_an_error(model: LlamaModel) -> None:
    engine = Engine(model, n_ctx=256, n_threads=2, n_seq_max=1)
    running = Consumer(engine, model.tokenize(PROMPTS[0]), GREEDY.with_(max_tokens=200))
    assert running.started.wait(60)
    engine.close()
    running.join()
    assert isinstance(running.error, BackendError)
    with pytest.raises(BackendError, match="closed"):
        greedy(engine, model.tokenize(PROMPTS[1]))
