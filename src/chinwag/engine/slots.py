"""The engine's sequence slots: which slot a new prompt takes, and the KV cells slots keep.

A slot is one llama.cpp sequence id and, with one KV stream per sequence (``kv_unified`` off,
llama-server's layout), its own KV buffer of ``n_ctx`` cells: a token attends only over its own
slot's cells, however many other slots hold.

Prefix reuse: a slot keeps the KV cells of the last sequence it ran (``kept``). A new prompt
takes the free slot whose kept tokens share the longest prefix with it (llama.cpp's server picks
slots the same way), drops the cells after that prefix and computes only the rest; a returning
conversation, or an OpenAI client re-sending its history, skips the turns already computed.

Placement: llama.cpp splits a batch at gaps in the sequence ids when the KV buffers are separate
(``llama_batch_allocr::split_equal`` with sequential ids): slots 0, 1 and 3 decode in two
micro-batches, each reading every weight (measured: four sequences in slots 0, 2, 4, 6 take 105
ms a step, in slots 0-3 60 ms). So a newcomer that reuses nothing takes the free slot next to
the most busy slots (keeping the busy ones in the fewest runs of consecutive ids), then one
keeping no cells, then the least recently used; and when the slot holding its prefix lies out
of line, its cells are copied to the slot in line first (``_move``).

Sliding-window layers (Gemma 3): the SWA cache keeps the last ``n_swa`` positions of each
sequence and about ``n_ubatch`` more (``swa_full`` off, as llama-server runs), so a slot can be
cut back only to a point whose window is still whole; ``window_intact`` checks that with
``llama_memory_seq_pos_min`` and the prompt is computed whole otherwise.

Beyond the slots (``PromptCache``): before a slot's kept cells are overwritten, their state is
saved (``llama_state_seq_get_data``) to the RAM cache, and to disk when it has a folder; a prompt
that extends a saved state further than any free slot does gets it restored into a slot
(``llama_state_seq_set_data``). A saved state holds only the window's cells of the SWA layers
(llama.cpp skips masked cells when saving), so it can be continued only from its end:
``PromptCache.usable`` says when, and ``window_intact`` confirms it after restoring.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import llama_cpp

from chinwag.engine.prompt_cache import CacheStats, PromptCache, common_prefix

MIN_GAIN = 16
"""Tokens a slot's cells or a saved state must spare to be worth reusing, saving or restoring
(a restore of ~600 tokens takes about 2 ms; computing 16 tokens about 50 ms on 2 threads)."""


@dataclass(frozen=True)
class Claim:
    """A slot given to a prompt.

    Attributes:
        slot: the llama.cpp sequence id.
        reused: leading prompt tokens whose KV cells the slot already holds (0: none).
        source: where those cells came from: ``slot`` (kept by it), ``ram`` or ``disk``
            (restored from the prompt cache), or None.
    """

    slot: int
    reused: int
    source: str | None


class Slots:
    """The ``n_slots`` sequence slots of one llama.cpp context: free list, kept cells, prompt
    cache traffic. Not thread-safe: the engine calls it under its lock, with no step running
    (claiming and releasing edit the KV cache).

    Args:
        ctx: the ``llama_context *``.
        n_slots: sequence ids 0 .. n_slots - 1.
        n_swa: the model's sliding-window length, tokens (0: none).
        cache: where kept cells go before they are overwritten; None: nowhere.
        stats: counters to update (hits by source, misses, cached tokens, restore failures).
    """

    def __init__(self, ctx: Any, n_slots: int, *, n_swa: int = 0,
                 cache: PromptCache | None = None, stats: CacheStats | None = None) -> None:
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self.n_slots = n_slots
        self.n_swa = n_swa
        self.cache = cache
        self.stats = stats if stats is not None else CacheStats()
        self._free: list[int] = list(range(n_slots))  # least recently used first
        self._kept: dict[int, list[int]] = {}  # free slot -> tokens whose cells it holds
        self.moves = 0  # kept cells copied to a slot next to the busy ones
        self._unsettled: set[int] = set()  # slots a copy still to be made reads or writes
        self._copying: set[int] = set()  # slots such a copy writes

    # -- what tests and metrics may look at ----------------------------------------------------

    @property
    def free(self) -> tuple[int, ...]:
        """Free slots, least recently used first."""
        return tuple(self._free)

    @property
    def busy(self) -> tuple[int, ...]:
        """Slots in use, in id order."""
        free = set(self._free)
        return tuple(s for s in range(self.n_slots) if s not in free)

    def kept(self, slot: int) -> list[int]:
        """The tokens whose KV cells a free slot still holds (empty: none)."""
        return list(self._kept.get(slot, ()))

    # -- claiming and releasing ------------------------------------------------------------------

    def claim(self, prompt: list[int], *, reuse: bool = True) -> Claim:
        """Take a free slot for ``prompt``, holding the longest prefix of it that a free slot
        or the prompt cache has (never the last prompt token: its logits are needed).

        Args:
            prompt: the prompt's token ids (at least one).
            reuse: look for cached cells at all; False: the prompt is computed whole (and the
                counters are left alone).

        Raises:
            RuntimeError: no slot is free (the caller checks ``free`` first).
        """
        if not self._free:
            raise RuntimeError("no free slot")
        limit = len(prompt) - 1
        slot, n = self._with_prefix(prompt) if reuse else (-1, 0)
        claim = Claim(slot, min(n, limit), "slot") if slot >= 0 else \
            Claim(self._placement(), 0, None)
        if reuse and self.cache is not None:
            claim = self._from_cache(prompt, limit, claim)
        if claim.source == "slot":
            target = self._placement()
            if self._neighbours(target) > self._neighbours(claim.slot):
                claim = Claim(self._move(claim.slot, target, claim.reused), claim.reused, "slot")
            if not self._cut(claim.slot, claim.reused):
                claim = Claim(claim.slot, 0, None)
        if claim.source is None:
            self._clear(claim.slot)
        self._free.remove(claim.slot)
        self._kept.pop(claim.slot, None)
        if reuse:
            self._count(claim)
        return claim

    def claim_empty(self) -> int:
        """Take a free slot with no cells (its kept cells saved to the prompt cache first),
        for work outside the step loop (scoring).

        Raises:
            RuntimeError: no slot is free.
        """
        if not self._free:
            raise RuntimeError("no free slot")
        slot = self._placement()
        self._clear(slot)
        self._free.remove(slot)
        return slot

    def release(self, slot: int, fed: list[int] | None) -> None:
        """Give a slot back. ``fed``: the tokens whose cells it now holds, kept for a later
        prompt to reuse; None: its cells cannot be trusted (a failed step, scoring) and are
        dropped."""
        if fed:
            self._kept[slot] = fed
        else:
            llama_cpp.llama_memory_seq_rm(self._mem, slot, -1, -1)
            self._kept.pop(slot, None)
        self._free.append(slot)

    def forget_kept(self) -> None:
        """Drop the KV cells every free slot keeps."""
        for slot in list(self._kept):
            llama_cpp.llama_memory_seq_rm(self._mem, slot, -1, -1)
        self._kept.clear()

    def stash_all(self) -> None:
        """Save every free slot's kept cells to the prompt cache (before closing)."""
        for slot in list(self._kept):
            self.stash(slot)

    # -- the KV cells --------------------------------------------------------------------------

    def stash(self, slot: int) -> None:
        """Save a free slot's kept cells to the prompt cache (nothing to do without a cache, or
        when it keeps fewer than ``MIN_GAIN`` tokens); the slot no longer counts them as kept."""
        kept = self._kept.pop(slot, None)
        if self.cache is None or not kept or len(kept) < MIN_GAIN or slot in self._copying:
            return
        size = llama_cpp.llama_state_seq_get_size(self._ctx, slot)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._ctx, buf, size, slot)
        if written > 0:
            self.cache.put(kept, bytes(buf)[:written])

    def restore(self, slot: int, state: bytes, keep: int) -> bool:
        """Load a saved state into ``slot`` and cut it to its first ``keep`` tokens; False
        (slot cleared) if llama.cpp refuses the state or the cells the next token needs are
        not all there."""
        llama_cpp.llama_memory_seq_rm(self._mem, slot, -1, -1)
        self._kept.pop(slot, None)
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(self._ctx, buf, len(state), slot) == 0 or \
                not llama_cpp.llama_memory_seq_rm(self._mem, slot, keep, -1) or \
                not self.window_intact(slot, keep):
            llama_cpp.llama_memory_seq_rm(self._mem, slot, -1, -1)
            return False
        return True

    def window_intact(self, slot: int, n_keep: int) -> bool:
        """Whether ``slot`` holds every cell a token at position ``n_keep`` attends to: all of
        them, or with sliding-window attention the last ``n_swa`` (llama.cpp masks a cell
        when the positions differ by ``n_swa`` or more)."""
        pos_min = llama_cpp.llama_memory_seq_pos_min(self._mem, slot)
        if pos_min <= 0 or n_keep == 0:
            return True
        return self.n_swa > 0 and pos_min <= n_keep - self.n_swa + 1

    # -- choosing ------------------------------------------------------------------------------

    def _with_prefix(self, prompt: list[int]) -> tuple[int, int]:
        """The free slot whose kept tokens share the longest prefix (at least ``MIN_GAIN``)
        with ``prompt`` (among equals, the one next to the most busy slots), and that length;
        (-1, 0) when none does."""
        best, length, near = -1, 0, -1
        for slot in self._free:
            n = common_prefix(self._kept.get(slot, []), prompt)
            if n < MIN_GAIN or n < length:
                continue
            if n > length or self._neighbours(slot) > near:
                best, length, near = slot, n, self._neighbours(slot)
        return best, length

    def _placement(self) -> int:
        """The free slot for a prompt that reuses nothing (see the module docstring)."""
        order = {slot: i for i, slot in enumerate(self._free)}
        return min(self._free, key=lambda slot: (-self._neighbours(slot),
                                                 bool(self._kept.get(slot)), order[slot]))

    def _neighbours(self, slot: int) -> int:
        """How many of the slots next to ``slot`` (by id) are busy."""
        return sum(1 for s in (slot - 1, slot + 1)
                   if 0 <= s < self.n_slots and s not in self._free)

    def _move(self, source: int, target: int, n: int) -> int:
        """Copy a free slot's kept cells into another free slot, for a prompt that reuses their
        first ``n`` tokens, and return the target (the source keeps its cells).

        The copy is of the whole KV stream, made by llama.cpp at the next decode
        (``llama_memory_seq_cp`` across streams): about 20 MiB for a 2,048-token slot of Gemma
        3 270M, a few milliseconds, against a micro-batch more at every step for as long as the
        slot stays out of line. Until that decode (``settled``), the target's cells are only
        metadata: nothing reads them (``stash``) and nothing is restored into either slot."""
        self._clear(target)
        llama_cpp.llama_memory_seq_cp(self._mem, source, target, -1, -1)
        self._kept[target] = list(self._kept.get(source, ()))[:n]
        self._unsettled.update((source, target))
        self._copying.add(target)
        self.moves += 1
        return target

    def settled(self) -> None:
        """Called after each ``llama_decode``: the copies ``_move`` asked for are made."""
        self._unsettled.clear()
        self._copying.clear()

    def _from_cache(self, prompt: list[int], limit: int, claim: Claim) -> Claim:
        """``claim``, or a slot restored from the prompt cache when a saved state spares at
        least ``MIN_GAIN`` more tokens."""
        assert self.cache is not None
        entry, n = self.cache.best(prompt)
        keep = min(n, limit)
        if entry is None or keep < claim.reused + MIN_GAIN:
            return claim
        target = self._placement()
        if target in self._unsettled:  # a copy into or out of it is still to be made
            return claim
        self._clear(target)
        state = self.cache.state_of(entry)
        if state is not None and self.restore(target, state, keep):
            return Claim(target, keep, "ram" if entry.state is not None else "disk")
        self.stats.restore_failures += 1
        return claim if claim.slot != target else Claim(target, 0, None)

    def _cut(self, slot: int, n: int) -> bool:
        """Keep only a free slot's first ``n`` cells; False (slot cleared) when the cells the
        next token needs are gone (sliding window) or llama.cpp refuses the cut."""
        kept = self._kept.get(slot)
        if not kept:
            return False
        if len(kept) > n + 1:  # cells of another conversation are about to go: save them
            self.stash(slot)
        if llama_cpp.llama_memory_seq_rm(self._mem, slot, n, -1) and \
                self.window_intact(slot, n):
            return True
        llama_cpp.llama_memory_seq_rm(self._mem, slot, -1, -1)
        self._kept.pop(slot, None)
        return False

    def _clear(self, slot: int) -> None:
        """Save a free slot's kept cells to the prompt cache, then drop them."""
        self.stash(slot)
        llama_cpp.llama_memory_seq_rm(self._mem, slot, -1, -1)

    def _count(self, claim: Claim) -> None:
        if claim.source == "slot":
            self.stats.hits_slot += 1
        elif claim.source == "ram":
            self.stats.hits_ram += 1
        elif claim.source == "disk":
            self.stats.hits_disk += 1
        else:
            self.stats.misses += 1
        self.stats.cached_tokens += claim.reused
