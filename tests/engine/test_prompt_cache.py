"""The prompt cache: RAM LRU, disk files, the sliding-window rule; and, on the real model,
states restored from RAM and from disk continuing exactly as the live cells would."""

from __future__ import annotations

from pathlib import Path

import pytest

from chinwag.engine import Engine, LlamaModel
from chinwag.engine.prompt_cache import PromptCache, common_prefix
from support.engine import GREEDY


def state(n: int, fill: int = 7) -> bytes:
    return bytes([fill]) * n


# -- the cache on its own ------------------------------------------------------------------------

def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5], [1]) == 0


def test_best_entry_is_the_longest_shared_prefix() -> None:
    cache = PromptCache(1 << 20)
    cache.put([1, 2, 3, 4], state(10))
    cache.put([1, 2, 9, 9, 9], state(10))
    entry, n = cache.best([1, 2, 3, 4, 5, 6])
    assert entry is not None and entry.tokens == [1, 2, 3, 4] and n == 4
    assert cache.best([8, 8]) == (None, 0)


def test_an_entry_that_a_newer_one_extends_is_dropped() -> None:
    cache = PromptCache(1 << 20)
    cache.put([1, 2, 3], state(10))
    cache.put([1, 2, 3, 4, 5], state(20))
    assert len(cache) == 1 and cache.ram_used == 20
    entry, n = cache.best([1, 2, 3, 4, 5, 6])
    assert entry is not None and n == 5


def test_least_recently_used_entries_leave_ram_first() -> None:
    cache = PromptCache(25)
    a = cache.put([1, 1], state(10))
    cache.put([2, 2], state(10))
    assert cache.state_of(a) is not None  # touch a: [2, 2] is now the oldest
    cache.put([3, 3], state(10))
    assert cache.ram_used == 20 and cache.stats.evictions == 1
    assert cache.best([2, 2, 5]) == (None, 0)
    assert cache.best([1, 1, 5])[1] == 2 and cache.best([3, 3, 5])[1] == 2


def test_sliding_window_states_are_continued_only_from_their_end() -> None:
    """With n_swa = 4, a 10-token state holds only its last 4 positions in the SWA layers:
    it can be cut to 9 tokens (the next token's window is then positions 6..9), not to 8."""
    cache = PromptCache(1 << 20, n_swa=4)
    tokens = list(range(10))
    cache.put(tokens, state(10))
    assert cache.usable(10, 9) and cache.usable(10, 10)
    assert not cache.usable(10, 8)
    assert cache.usable(3, 1)  # shorter than the window: every cell was saved
    assert cache.best([*tokens[:8], 99, 99]) == (None, 0)
    assert cache.best([*tokens[:9], 99])[1] == 9


def test_entries_written_to_disk_are_found_after_a_restart(tmp_path: Path) -> None:
    cache = PromptCache(1 << 20, tmp_path, fingerprint="m1")
    cache.put([1, 2, 3], state(100, 1))
    cache.close()
    again = PromptCache(1 << 20, tmp_path, fingerprint="m1")
    entry, n = again.best([1, 2, 3, 4])
    assert entry is not None and n == 3 and entry.state is None  # on disk only
    assert again.state_of(entry) == state(100, 1)
    other_model = PromptCache(1 << 20, tmp_path, fingerprint="m2")
    assert other_model.best([1, 2, 3, 4]) == (None, 0)


def test_ram_evictions_stay_on_disk(tmp_path: Path) -> None:
    cache = PromptCache(15, tmp_path, fingerprint="m")
    first = cache.put([1, 1], state(10, 1))
    cache.put([2, 2], state(10, 2))
    cache.flush()
    assert cache.stats.evictions == 1 and first.state is None
    assert cache.state_of(first) == state(10, 1)


def test_disk_budget_removes_the_oldest_files(tmp_path: Path) -> None:
    cache = PromptCache(1 << 20, tmp_path, fingerprint="m", disk_bytes=250)
    for i in range(5):
        cache.put([i, i], state(100, i))
        cache.flush()
    files = list((tmp_path / "m").glob("*.kv"))
    assert 1 <= len(files) <= 2
    cache.close()
    again = PromptCache(1 << 20, tmp_path, fingerprint="m")
    assert again.best([4, 4, 0])[1] == 2 and again.best([0, 0, 1]) == (None, 0)


def test_unreadable_files_are_skipped_not_fatal(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "junk.kv").write_bytes(b"not a cache file")
    cache = PromptCache(1 << 20, tmp_path, fingerprint="m")
    entry = cache.put([1, 2, 3], state(50))
    cache.close()
    # cut the state short: its tokens still list, reading the state fails and drops it
    data = entry.path.read_bytes() if entry.path else b""
    (folder / f"{entry.key}.kv").write_bytes(data[:-10])
    again = PromptCache(1 << 20, tmp_path, fingerprint="m")
    found, n = again.best([1, 2, 3, 4])
    assert found is not None and n == 3
    assert again.state_of(found) is None
    assert again.best([1, 2, 3, 4]) == (None, 0)
    again.flush()  # the file is removed by the cache's writer thread
    assert not (folder / f"{entry.key}.kv").exists()


# -- restoring on the real model -----------------------------------------------------------------

def greedy(engine: Engine, tokens: list[int]) -> tuple[list[int], str | None, int]:
    seq = engine.submit(tokens, GREEDY)
    out = list(engine.run(seq))
    return out, seq.cache_source, seq.n_cached


def cached_engine(model: LlamaModel, folder: Path | None, ram: int = 1 << 30) -> Engine:
    cache = PromptCache(ram, folder, fingerprint=model.fingerprint(), n_swa=model.n_swa)
    return Engine(model, n_ctx=1024, n_threads=2, n_seq_max=1, prompt_cache=cache)


@pytest.fixture(scope="module")
def turns(model: LlamaModel) -> tuple[list[int], list[int], list[int]]:
    """A 600-token first prompt (longer than Gemma 3's 512-token sliding window), the greedy
    answer, the second turn's prompt, and the answer a slot still holding turn 1 gives."""
    first = model.tokenize("The history of the village of Limbo begins long ago, when " * 50)
    first = first[:600]
    live = Engine(model, n_ctx=1024, n_threads=2, n_seq_max=2)
    try:
        answer = greedy(live, first)[0]
        second = first + answer + model.tokenize(" And then,", add_special=False)
        from_slot, source, n_cached = greedy(live, second)
        assert source == "slot" and n_cached >= len(first) + len(answer) - 1
    finally:
        live.close()
    return second, from_slot, answer


@pytest.mark.slow
def test_a_state_restored_from_ram_continues_exactly_as_the_live_cells(
        model: LlamaModel, turns: tuple[list[int], list[int], list[int]]) -> None:
    """One slot: another prompt overwrites turn 1's cells, which go to RAM; turn 2 restores
    them and gives token for token what the slot that kept them gave (the cells are the same
    bytes), and the first token that computing everything again gives (later ones may differ:
    as llama.cpp warns, logits are not bit-identical across batch shapes, and a build without
    AMX kernels shows it here)."""
    second, from_slot, answer = turns
    engine = cached_engine(model, None)
    fresh = Engine(model, n_ctx=1024, n_threads=2)
    try:
        assert greedy(engine, second[:600])[0] == answer
        greedy(engine, model.tokenize("A recipe for bread: flour, water,"))
        assert engine.stats.misses == 2 and len(engine.cache or ()) == 1
        out, source, n_cached = greedy(engine, second)
        assert source == "ram" and n_cached >= 600 + len(answer) - 1
        assert out == from_slot
        assert greedy(fresh, second)[0][0] == out[0]
        assert engine.stats.hits_ram == 1
    finally:
        engine.close()
        fresh.close()


@pytest.mark.slow
def test_a_state_saved_to_disk_serves_the_next_process(
        model: LlamaModel, turns: tuple[list[int], list[int], list[int]],
        tmp_path: Path) -> None:
    """Closing the engine saves its slot to the folder; a new engine on the same folder
    restores it for turn 2 and continues exactly as the live cells did."""
    second, from_slot, answer = turns
    before = cached_engine(model, tmp_path)
    assert greedy(before, second[:600])[0] == answer
    before.close()
    after = cached_engine(model, tmp_path)
    try:
        out, source, n_cached = greedy(after, second)
        assert source == "disk" and n_cached >= 600 + len(answer) - 1
        assert out == from_slot
    finally:
        after.close()


@pytest.mark.slow
def test_llama_cpp_refuses_to_cut_a_restored_state_inside_the_window(
        model: LlamaModel, turns: tuple[list[int], list[int], list[int]]) -> None:
    """The SWA rule ``PromptCache.usable`` encodes agrees with the cells llama.cpp restores:
    a 600+-token state can be cut by one token, not by two; a prompt sharing less than that
    is computed whole and still gives the recomputed answer."""
    second = turns[0]
    engine = cached_engine(model, None)
    try:
        greedy(engine, second[:600])
        greedy(engine, model.tokenize("A recipe for bread: flour, water,"))
        cache = engine.cache
        assert cache is not None
        entry, _ = cache.best(second)
        assert entry is not None
        saved = cache.state_of(entry)
        assert saved is not None
        n = len(entry.tokens)
        engine.forget_kept()
        for keep in (n - 1, n - 2, n - 100, 100):
            assert engine.slots.restore(0, saved, keep) == cache.usable(n, keep), keep
        assert cache.usable(n, n - 1) and not cache.usable(n, n - 2)
        fork = second[:550] + model.tokenize(" Meanwhile, far away,", add_special=False)
        fresh = Engine(model, n_ctx=1024, n_threads=2)
        try:
            expected = greedy(fresh, fork)[0]
        finally:
            fresh.close()
        out, source, n_cached = greedy(engine, fork)
        assert source is None and n_cached == 0
        assert out == expected
    finally:
        engine.close()


def test_a_folder_that_cannot_be_used_is_a_config_error(tmp_path: Path) -> None:
    from chinwag.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="KV cache folder"):
        PromptCache(1 << 20, blocker, fingerprint="m")
