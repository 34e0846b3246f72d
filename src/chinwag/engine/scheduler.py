"""The engine: a llama.cpp context and the step loop that advances sequences through it.

Each step builds one ``llama_batch`` holding, for every active sequence, either its last sampled
token (decoding) or the next chunk of its prompt (prefill), runs one ``llama_decode``, then
samples one token for every sequence whose logits came out. Sequences in the decode phase go
first so that a long prompt never delays tokens already being streamed.

Continuous batching without a driver thread: every caller of ``run`` consumes its own
sequence's tokens, and whichever caller finds no token waiting and nobody stepping runs the
next step for all active sequences (leader/follower). A new sequence joins at the next step; a
finished or cancelled one leaves after the step it is in. With ``n_seq_max`` slots busy, a new
``run`` waits for one to free up.

Prefix reuse: a slot keeps the KV cells of the last sequence it ran. A new sequence takes the
free slot whose kept tokens share the longest prefix with its prompt (llama.cpp's server picks
slots the same way), drops the cells after that prefix and computes only the rest; a returning
conversation, or an OpenAI client re-sending its history, skips the turns already computed.
Gemma 3's sliding-window layers keep every cell in the live context (``swa_full``,
llama.cpp's default), so any prefix of a slot can be kept.

Beyond the slots (``PromptCache``): before a new sequence overwrites a slot's kept cells, their
state is saved (``llama_state_seq_get_data``) to the RAM cache, and to disk when it has a
folder; a prompt that extends a saved state further than any free slot does gets it restored
into a slot (``llama_state_seq_set_data``). A saved state holds only the sliding window's cells
of the SWA layers (llama.cpp skips masked cells when saving), so it can be continued only from
its end: ``PromptCache.usable`` says when, and after restoring, a ``seq_pos_min`` check confirms
the cells the next token attends to are all there, or the prompt is computed whole.

Chunked prefill: while other sequences are decoding, a prompt advances at most
``prefill_chunk`` tokens a step, so a newcomer with a long history delays each streamed token
by one chunk, not by its whole prompt.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np

from chinwag.engine.model import LlamaModel, recent_log
from chinwag.engine.prompt_cache import CacheStats, PromptCache, common_prefix
from chinwag.engine.sampler import Sampler
from chinwag.errors import BackendError, ContextOverflow, InvalidParams
from chinwag.types import FinishReason, SamplingParams

_MIN_GAIN = 16
"""Tokens a saved state must spare to be worth saving or restoring (a restore of ~600 tokens
takes about 2 ms; computing 16 tokens about 50 ms on 2 threads)."""


@dataclass(eq=False)
class Sequence:
    """One prompt being continued by the engine.

    Attributes:
        seq_id: llama.cpp sequence id (its KV cells carry it).
        prompt: prompt token ids.
        max_tokens: most tokens to sample.
        n_past: tokens of this sequence already in the KV cache.
        n_generated: tokens sampled so far (end-of-generation tokens excluded).
        n_cached: prompt tokens whose KV cells were reused (from a slot or the prompt cache).
        cache_source: where they came from: ``slot``, ``ram``, ``disk``, or None.
        fed: the tokens whose KV cells this sequence holds, in order.
        finish_reason: None while running; ``stop``, ``length`` or ``cancelled`` after.
    """

    seq_id: int
    prompt: list[int]
    sampler: Sampler
    max_tokens: int
    n_past: int = 0
    n_prompt_done: int = 0
    last_token: int = -1
    n_generated: int = 0
    finish_reason: FinishReason | None = None
    new_tokens: deque[int] = field(default_factory=deque)
    admitted: bool = False
    reuse: bool = True
    n_cached: int = 0
    cache_source: str | None = None
    fed: list[int] = field(default_factory=list)

    @property
    def prefilling(self) -> bool:
        return self.n_prompt_done < len(self.prompt)


class Engine:
    """A llama.cpp context running sequences of one model.

    Args:
        model: the loaded model.
        n_ctx: context window per sequence, tokens.
        n_batch: most tokens in one ``llama_decode`` call (prompt chunks are this long).
        n_threads: CPU threads; default: all cores.
        n_seq_max: sequences that may share the context at once.
        prefill_chunk: most prompt tokens of one sequence per step while others decode.
        prompt_cache: where idle slots' KV state goes (RAM, disk); None: slots only.

    Attributes:
        steps: ``llama_decode`` calls made by the step loop so far (for tests and metrics).
        stats: prompt-cache counters (hits by source, misses, evictions).

    Raises:
        BackendError: llama.cpp could not create the context (the message quotes its log).
    """

    def __init__(self, model: LlamaModel, *, n_ctx: int = 4096, n_batch: int = 512,
                 n_threads: int | None = None, n_seq_max: int = 1, prefill_chunk: int = 128,
                 prompt_cache: PromptCache | None = None) -> None:
        self.model = model
        self.prefill_chunk = max(1, prefill_chunk)
        self.cache = prompt_cache
        self.stats = prompt_cache.stats if prompt_cache is not None else CacheStats()
        self.n_swa = model.n_swa
        threads = n_threads or os.cpu_count() or 1
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * n_seq_max
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, 512)
        params.n_seq_max = n_seq_max
        # one KV buffer shared by all sequences: with a buffer per sequence, llama.cpp splits a
        # batch of 8 decoding sequences into per-sequence pieces (measured: 8 streams 48 tok/s
        # with separate buffers, 84 tok/s unified, on 2 threads)
        params.kv_unified = True
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(model.handle, params)
        if not self._ctx:
            raise BackendError(f"llama.cpp could not create a context: {recent_log()}")
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_threads = threads
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, n_seq_max)
        self.n_seq_max = n_seq_max
        self._free_ids: list[int] = list(range(n_seq_max))  # least recently used first
        self._kept: dict[int, list[int]] = {}  # slot -> tokens whose cells it still holds
        self._active: list[Sequence] = []
        self._cancelled: list[Sequence] = []
        self._pending: list[Sequence] = []
        self._cond = threading.Condition()
        self._stepping = False
        self.steps = 0

    # -- generation ----------------------------------------------------------------------------

    def submit(self, prompt: list[int], params: SamplingParams,
               grammar: str | None = None, *, reuse: bool = True) -> Sequence:
        """Check and register a prompt; tokens come from ``run(sequence)``.

        ``reuse``: start from a free slot's kept KV cells when they share a prefix with the
        prompt (see the module docstring); otherwise the prompt is computed whole.

        Raises:
            InvalidParams: the prompt has no tokens.
            ContextOverflow: the prompt does not leave room for one token of reply.
            SchemaError: the grammar was rejected.
        """
        if not prompt:
            raise InvalidParams("the prompt is empty", param="prompt")
        if len(prompt) >= self.n_ctx:
            raise ContextOverflow(len(prompt), self.n_ctx)
        sampler = Sampler(self.model.vocab, self.model.n_vocab, params, grammar)
        return Sequence(seq_id=-1, prompt=list(prompt), sampler=sampler,
                        max_tokens=params.max_tokens, reuse=reuse)

    def run(self, seq: Sequence) -> Generator[int, None, None]:
        """Advance ``seq`` to its end, yielding each sampled token id as it comes.

        Waits for a free sequence slot first. Other threads' sequences advance in the same
        ``llama_decode`` calls. Closing the iterator early cancels the sequence
        (``finish_reason == "cancelled"``); its KV cells and sampler are freed after the step
        under way, if any.

        Raises:
            BackendError: ``llama_decode`` failed (every sequence in that step fails).
        """
        with self._cond:
            self._pending.append(seq)
        try:
            while True:
                with self._cond:
                    while True:
                        token = seq.new_tokens.popleft() if seq.new_tokens else None
                        if token is not None or seq.finish_reason is not None:
                            lead = False
                            break
                        if not self._stepping:
                            self._admit_pending()
                            if self._active:  # work to do: lead the next step
                                self._stepping = lead = True
                                break
                        self._cond.wait()
                if token is not None:
                    yield token
                    continue
                if not lead:
                    return
                try:
                    self._step()
                except BackendError:
                    self._fail_all()
                    raise
                finally:
                    with self._cond:
                        self._stepping = False
                        self._sweep()
                        self._cond.notify_all()
        finally:
            with self._cond:
                if seq.finish_reason is None:
                    seq.finish_reason = "cancelled"
                if seq in self._pending:
                    self._pending.remove(seq)
                if self._stepping:
                    self._cancelled.append(seq)  # the stepper frees it after its step
                else:
                    self._release(seq)
                self._cond.notify_all()

    def _admit_pending(self) -> None:
        """Give free slots to waiting sequences, first come first served (under ``_cond``,
        with no step running: admission edits the KV cache)."""
        while self._pending and self._free_ids:
            self._admit(self._pending.pop(0))

    def _admit(self, seq: Sequence) -> None:
        """Give ``seq`` a free slot, starting from the longest cached prefix of its prompt: a
        free slot's kept cells, else a state restored from the prompt cache."""
        slot, reuse = self._pick_slot(seq)
        limit = len(seq.prompt) - 1  # the last prompt token must be computed
        source: str | None = "slot" if reuse else None
        if seq.reuse and self.cache is not None:
            entry, n = self.cache.best(seq.prompt)
            if entry is not None and min(n, limit) >= reuse + _MIN_GAIN:
                target = self._pick_slot(seq, empty=True)[0]
                self._stash(target)
                state = self.cache.state_of(entry)
                keep = min(n, limit)
                if state is not None and self._restore(target, state, keep):
                    slot, reuse, source = target, keep, "disk" if entry.state is None else "ram"
                else:
                    self.stats.restore_failures += 1
                    if target == slot:
                        reuse, source = 0, None
        reuse = min(reuse, limit)
        if source == "slot":
            kept = self._kept.get(slot, [])
            if len(kept) > reuse + 1:  # cells of another conversation are about to go
                self._stash(slot)
            if not (llama_cpp.llama_memory_seq_rm(self._mem, slot, reuse, -1) and
                    self._window_intact(slot, reuse)):
                reuse, source = 0, None
        if source is None:
            self._stash(slot)
            llama_cpp.llama_memory_seq_rm(self._mem, slot, -1, -1)
            reuse = 0
        self._free_ids.remove(slot)
        self._kept.pop(slot, None)
        seq.seq_id = slot
        seq.n_past = seq.n_prompt_done = seq.n_cached = reuse
        seq.fed = list(seq.prompt[:reuse])
        seq.cache_source = source
        if seq.reuse:
            if source == "slot":
                self.stats.hits_slot += 1
            elif source == "ram":
                self.stats.hits_ram += 1
            elif source == "disk":
                self.stats.hits_disk += 1
            else:
                self.stats.misses += 1
            self.stats.cached_tokens += reuse
        seq.admitted = True
        self._active.append(seq)

    def _pick_slot(self, seq: Sequence, *, empty: bool = False) -> tuple[int, int]:
        """The free slot whose kept tokens share the longest prefix with ``seq``'s prompt, and
        that length; with fewer than ``_MIN_GAIN`` tokens shared (or ``empty``), a slot keeping
        nothing, else the least recently used one, and 0."""
        best, reuse = -1, 0
        for slot in self._free_ids if seq.reuse and not empty else ():
            n = common_prefix(self._kept.get(slot, []), seq.prompt)
            if n > reuse and n >= _MIN_GAIN:
                best, reuse = slot, n
        if best < 0:
            unused = [s for s in self._free_ids if not self._kept.get(s)]
            best = unused[0] if unused else self._free_ids[0]
        return best, reuse

    def _stash(self, slot: int) -> None:
        """Save a free slot's kept cells to the prompt cache before they are overwritten
        (nothing to do without a cache, or when the slot keeps fewer than ``_MIN_GAIN``
        tokens)."""
        kept = self._kept.get(slot)
        if self.cache is None or not kept or len(kept) < _MIN_GAIN:
            return
        size = llama_cpp.llama_state_seq_get_size(self._ctx, slot)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._ctx, buf, size, slot)
        if written > 0:
            self.cache.put(kept, bytes(buf)[:written])
        self._kept.pop(slot, None)

    def _restore(self, slot: int, state: bytes, keep: int) -> bool:
        """Load a saved state into ``slot`` and cut it to its first ``keep`` tokens; False
        (slot cleared) if llama.cpp refuses the state or the cells the next token needs are
        not all there."""
        llama_cpp.llama_memory_seq_rm(self._mem, slot, -1, -1)
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(self._ctx, buf, len(state), slot) == 0 or \
                not llama_cpp.llama_memory_seq_rm(self._mem, slot, keep, -1) or \
                not self._window_intact(slot, keep):
            llama_cpp.llama_memory_seq_rm(self._mem, slot, -1, -1)
            return False
        return True

    def _window_intact(self, slot: int, n_keep: int) -> bool:
        """Whether ``slot`` holds every cell a token at position ``n_keep`` attends to: all of
        them, or with sliding-window attention the last ``n_swa`` (llama.cpp masks a cell
        when the positions differ by ``n_swa`` or more)."""
        pos_min = llama_cpp.llama_memory_seq_pos_min(self._mem, slot)
        if pos_min <= 0 or n_keep == 0:
            return True
        return self.n_swa > 0 and pos_min <= n_keep - self.n_swa + 1

    def _release(self, seq: Sequence) -> None:
        """Free a sequence's slot, KV cells and sampler (called under ``_cond``, when no step
        is running)."""
        if seq in self._active:
            self._active.remove(seq)
        if seq.admitted:
            seq.admitted = False
            self._kept[seq.seq_id] = seq.fed  # its cells stay for a later prompt to reuse
            self._free_ids.append(seq.seq_id)
        seq.sampler.close()

    def _sweep(self) -> None:
        """After a step: free the sequences cancelled while it ran, and take finished ones
        out of the batch (their consumers may still be reading their last tokens)."""
        for seq in self._cancelled:
            self._release(seq)
        self._cancelled.clear()
        self._active = [s for s in self._active if s.finish_reason is None]

    def _fail_all(self) -> None:
        with self._cond:
            for seq in self._active:
                seq.finish_reason = "cancelled"

    def _step(self) -> None:
        self.steps += 1
        batch, n, wants = self._batch, 0, []
        for seq in self._active:  # decoding sequences first: one token each
            if not seq.prefilling:
                self._put(n, seq.last_token, seq.n_past, seq.seq_id, True)
                seq.fed.append(seq.last_token)
                wants.append((seq, n))
                seq.n_past += 1
                n += 1
        room = self.n_batch if n == 0 else min(self.n_batch, n + self.prefill_chunk)
        for seq in self._active:  # then prompt chunks, in the room left
            if seq.prefilling and n < room:
                start = seq.n_prompt_done
                chunk = seq.prompt[start:start + room - n]
                for tok in chunk:
                    self._put(n, tok, seq.n_past, seq.seq_id, False)
                    seq.n_past += 1
                    n += 1
                seq.n_prompt_done += len(chunk)
                seq.fed += chunk
                if not seq.prefilling:
                    batch.logits[n - 1] = 1
                    wants.append((seq, n - 1))
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(self._ctx, batch)
        if rc != 0:
            raise BackendError(f"llama_decode failed with code {rc}: {recent_log()}")
        for seq, index in wants:
            self._accept(seq, seq.sampler.sample(self._ctx, index))

    def _put(self, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        b = self._batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits

    def _accept(self, seq: Sequence, token: int) -> None:
        if self.model.is_eog(token):
            seq.finish_reason = "stop"
            return
        seq.n_generated += 1
        seq.last_token = token
        seq.new_tokens.append(token)
        if seq.n_generated >= seq.max_tokens or seq.n_past + 1 >= self.n_ctx:
            seq.finish_reason = "length"

    # -- scoring -------------------------------------------------------------------------------

    def logprobs(self, tokens: list[int], start: int) -> list[float]:
        """Natural-log probability of each of ``tokens[start:]`` given the tokens before it.

        Args:
            tokens: a whole token sequence (prompt then continuation).
            start: index of the first token to score (>= 1: the first token has no context).

        Raises:
            ContextOverflow: the tokens do not fit in the context window.
            InvalidParams: ``start`` is out of range.
        """
        if not 1 <= start <= len(tokens):
            raise InvalidParams(f"start must be in [1, {len(tokens)}], got {start}")
        if len(tokens) > self.n_ctx:
            raise ContextOverflow(len(tokens), self.n_ctx)
        with self._cond:
            while not self._free_ids or self._stepping:
                self._cond.wait()
            seq_id = self._free_ids[0]
            self._stash(seq_id)  # scoring overwrites the slot's cells
            self._free_ids.remove(seq_id)
            self._kept.pop(seq_id, None)
            self._stepping = True  # scoring uses the context: no step meanwhile
        try:
            return self._score(tokens, start, seq_id)
        finally:
            with self._cond:
                llama_cpp.llama_memory_seq_rm(self._mem, seq_id, -1, -1)
                self._free_ids.append(seq_id)
                self._stepping = False
                self._sweep()
                self._cond.notify_all()

    def _score(self, tokens: list[int], start: int, seq_id: int) -> list[float]:
        llama_cpp.llama_memory_seq_rm(self._mem, seq_id, -1, -1)
        scores: list[float] = []
        for begin in range(0, len(tokens) - 1, self.n_batch):
            chunk = range(begin, min(begin + self.n_batch, len(tokens) - 1))
            for i, pos in enumerate(chunk):
                self._put(i, tokens[pos], pos, seq_id, pos >= start - 1)
            self._batch.n_tokens = len(chunk)
            rc = llama_cpp.llama_decode(self._ctx, self._batch)
            if rc != 0:
                raise BackendError(f"llama_decode failed with code {rc}: {recent_log()}")
            for i, pos in enumerate(chunk):
                if pos >= start - 1:
                    scores.append(self._logprob_at(i, tokens[pos + 1]))
        return scores

    def _logprob_at(self, index: int, token: int) -> float:
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, index)
        logits = np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,)).astype(np.float64)
        top = logits.max()
        return float(logits[token] - top - np.log(np.exp(logits - top).sum()))

    def forget_kept(self) -> None:
        """Drop the KV cells every free slot keeps for prefix reuse."""
        with self._cond:
            for slot in list(self._kept):
                llama_cpp.llama_memory_seq_rm(self._mem, slot, -1, -1)
            self._kept.clear()

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the context and batch, after saving the slots' kept cells to the prompt cache
        when it writes to disk (a restarted server finds them). Idempotent."""
        if self._ctx and self.cache is not None:
            with self._cond:
                if self.cache.persistent:
                    for slot in list(self._kept):
                        self._stash(slot)
                self.cache.close()
        if self._ctx:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            self._ctx = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    @property
    def handle(self) -> Any:
        """The ``llama_context *`` pointer."""
        return self._ctx

