"""Which slot a prompt takes: running slots stay in one run of ids (llama.cpp splits a batch
at gaps when each slot has its own KV stream), a prefix is reused from the slot that keeps it,
and kept cells lying out of line are copied next to the running slots."""

from __future__ import annotations

import pytest

from chinwag.engine import Engine, LlamaModel
from support.engine import GREEDY, Consumer, greedy
from support.engine import assert_same_up_to_a_near_tie as same_up_to_a_near_tie
from support.waiting import wait_until

pytestmark = pytest.mark.slow

LONG = GREEDY.with_(max_tokens=400)
STORY = "The history of the village of Limbo begins long ago, when " * 3


def in_one_run(slots: list[int]) -> bool:
    return sorted(slots) == list(range(min(slots), min(slots) + len(slots)))


def test_newcomers_take_slots_next_to_the_running_ones(model: LlamaModel) -> None:
    """Four slots kept by earlier prompts, freed in a scattered order: two newcomers that
    reuse nothing still run side by side."""
    engine = Engine(model, n_ctx=256, n_threads=2, n_seq_max=4)
    try:
        first = [Consumer(engine, model.tokenize(f"Story {i}: once upon a time"), LONG)
                 for i in range(4)]
        assert all(c.started.wait(60) for c in first)
        for i in (2, 0, 3, 1):  # slots come free in this order
            engine.cancel(first[i].gen)
            first[i].join()
        assert engine.wait_idle(60)
        assert all(engine.slots.kept(s) for s in range(4))
        newcomers = [Consumer(engine, model.tokenize(f"A recipe {i}: flour, water,"), LONG)
                     for i in range(2)]
        assert all(c.started.wait(60) for c in newcomers)
        assert in_one_run([c.gen.seq_id for c in newcomers])
        for c in newcomers:
            engine.cancel(c.gen)
            c.join()
    finally:
        engine.close()


def test_a_prefix_kept_out_of_line_is_copied_next_to_the_running_slots(
        model: LlamaModel) -> None:
    """Turn 1 ran in slot 0; slot 2 is busy and slot 1 free: turn 2 of the first conversation
    gets turn 1's cells copied into slot 1 or 3 (llama_memory_seq_cp across KV streams),
    computes only the new tokens, and continues as a fresh engine computing everything."""
    engine = Engine(model, n_ctx=512, n_threads=2, n_seq_max=4)
    fresh = Engine(model, n_ctx=512, n_threads=2)
    try:
        first = model.tokenize(STORY)
        answer = greedy(engine, first)
        assert engine.slots.kept(0)[:len(first)] == first
        others = [Consumer(engine, model.tokenize(f"Story {i}: once upon a time"), LONG)
                  for i in range(2)]
        assert all(c.started.wait(60) for c in others)
        assert sorted(c.gen.seq_id for c in others) == [1, 2]
        quitter = next(c for c in others if c.gen.seq_id == 1)
        busy = next(c for c in others if c.gen.seq_id == 2)
        engine.cancel(quitter.gen)
        quitter.join()
        wait_until(lambda: 1 in engine.slots.free, what="slot 1 freed")
        second = first + answer + model.tokenize(" And then,", add_special=False)
        moved = Consumer(engine, second, GREEDY)
        moved.join()
        assert moved.error is None
        assert moved.gen.seq_id in (1, 3) and engine.slots.moves == 1
        assert moved.gen.n_cached >= len(first) + len(answer) - 1
        assert moved.gen.cache_source == "slot"
        same_up_to_a_near_tie(fresh, second, greedy(fresh, second), moved.tokens)
        engine.cancel(busy.gen)
        busy.join()
    finally:
        engine.close()
        fresh.close()
