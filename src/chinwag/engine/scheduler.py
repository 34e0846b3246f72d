"""The engine: a llama.cpp context and the step loop that advances generations through it.

Each step builds one ``llama_batch`` holding, for every active generation, either its last
sampled token (decoding) or the next chunk of its prompt (prefill), runs one ``llama_decode``,
then samples one token for every generation whose logits came out. Generations in the decode
phase go first, in slot order, so that a long prompt never delays tokens already being streamed
and llama.cpp can run the decoding slots as one micro-batch (see ``slots``).

The KV cache has one stream per slot (``kv_unified`` off, llama-server's high-throughput
layout): a token attends over its own slot's cells only, not over every cell in use, and the
sliding-window layers keep only their window (``swa_full`` off). Measured on 2 cores, 8 streams:
the unified buffer cost a third of the speed once slots kept cells between requests.

Continuous batching on one step thread: the engine's own thread admits waiting generations,
runs the steps and scoring; every caller of ``run`` only consumes its own generation's tokens
as the steps hand them over. One thread matters: llama.cpp's CPU backend runs each graph in an
OpenMP parallel region, and OpenMP keeps a team of worker threads per calling thread; with the
steps led by whichever caller came first (chinwag's first design) up to eight teams idled
around two cores, OpenMP then stopped spinning at its barriers, and every step got slower
(measured: one sequence 25 -> 28-33 ms a step). A new generation joins at the next step; a
finished or cancelled one leaves after the step it is in. With every slot busy, a new one waits
for a slot. ``cancel`` may be called from any thread: the generation stops at the next step, or
at once while it waits for a slot.

When ``llama_decode`` fails, every generation in that step fails: each consumer gets a
``BackendError`` (a cancelled or cut reply would look like a success), and their slots' cells
are dropped.

Slots, prefix reuse and the prompt cache: ``chinwag.engine.slots``.

Chunked prefill: while other generations are decoding, a prompt advances at most
``prefill_chunk`` tokens a step, so a newcomer with a long history delays each streamed token
by one chunk, not by its whole prompt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np

from chinwag.engine.model import LlamaModel, recent_log
from chinwag.engine.prompt_cache import CacheStats, PromptCache
from chinwag.engine.sampler import SampledLogprob, Sampler
from chinwag.engine.slots import Slots
from chinwag.errors import BackendError, ContextOverflow, InvalidParams
from chinwag.types import FinishReason, SamplingParams

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Generation:
    """One prompt being continued by the engine.

    Attributes:
        prompt: prompt token ids.
        max_tokens: most tokens to sample.
        seq_id: llama.cpp sequence id (its slot) once admitted, else -1.
        n_past: tokens of this generation already in the KV cache.
        n_generated: tokens sampled so far (end-of-generation tokens excluded).
        n_cached: prompt tokens whose KV cells were reused (from a slot or the prompt cache).
        cache_source: where they came from: ``slot``, ``ram``, ``disk``, or None.
        fed: the tokens whose KV cells this generation holds, in order.
        finish_reason: None while running; ``stop``, ``length`` or ``cancelled`` after.
        error: the failure that ended it (``llama_decode`` failed in one of its steps).
        background: background work (a server batch's line): it sits out the steps in which
            a live generation's prompt is computed, so that the live one's first token comes
            as fast as on an idle engine.
        logprobs: with ``SamplingParams.logprobs`` set, the ``SampledLogprob`` of each token
            sampled (end-of-generation tokens excluded), in order: the one of the k-th token
            ``run`` yields is ``logprobs[k]``, there before the token is; else empty.
    """

    prompt: list[int]
    sampler: Sampler
    max_tokens: int
    seq_id: int = -1
    n_past: int = 0
    n_prompt_done: int = 0
    last_token: int = -1
    n_generated: int = 0
    finish_reason: FinishReason | None = None
    error: BackendError | None = None
    new_tokens: deque[int] = field(default_factory=deque)
    admitted: bool = False
    reuse: bool = True
    n_cached: int = 0
    cache_source: str | None = None
    fed: list[int] = field(default_factory=list)
    background: bool = False
    logprobs: list[SampledLogprob] = field(default_factory=list)

    @property
    def prefilling(self) -> bool:
        return self.n_prompt_done < len(self.prompt)

    @property
    def ended(self) -> bool:
        """Finished, cancelled or failed."""
        return self.finish_reason is not None or self.error is not None


@dataclass
class EngineStats:
    """Counters of the step loop since start (``/metrics`` and the benchmarks read them).

    Attributes:
        steps: ``llama_decode`` calls of the step loop.
        batch_tokens: tokens those calls carried (decoded tokens and prompt chunks).
        decode_seconds: wall time inside ``llama_decode``.
        sample_seconds: wall time sampling (repetition penalty and llama.cpp's chain).
        step_seconds: wall time of whole steps (building the batch, decoding, sampling).
        admitted: generations given a slot.
        cancelled: generations cancelled by their caller before they finished.
        failed: generations ended by a failed ``llama_decode``.
    """

    steps: int = 0
    batch_tokens: int = 0
    decode_seconds: float = 0.0
    sample_seconds: float = 0.0
    step_seconds: float = 0.0
    admitted: int = 0
    cancelled: int = 0
    failed: int = 0


class Engine:
    """A llama.cpp context running generations of one model.

    Args:
        model: the loaded model.
        n_ctx: context window per generation (one slot's KV stream), tokens.
        n_batch: most tokens in one ``llama_decode`` call (prompt chunks are this long).
        n_threads: CPU threads; default: all cores.
        n_seq_max: slots: generations that may run at once.
        prefill_chunk: most prompt tokens of one generation per step while others decode.
        prompt_cache: where idle slots' KV state goes (RAM, disk); None: slots only.

    Attributes:
        slots: the slots, their kept cells and the prompt-cache traffic.
        stats: prompt-cache counters (hits by source, misses, evictions).
        timing: step-loop counters (steps, time decoding and sampling, outcomes).

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
        self.timing = EngineStats()
        threads = n_threads or os.cpu_count() or 1
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * n_seq_max
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, 512)
        params.n_seq_max = n_seq_max
        params.kv_unified = False  # a KV stream per slot (see the module docstring)
        params.swa_full = False
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(model.handle, params)
        if not self._ctx:
            raise BackendError(f"llama.cpp could not create a context: {recent_log()}")
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_threads = threads
        self.n_seq_max = n_seq_max
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.slots = Slots(self._ctx, n_seq_max, n_swa=model.n_swa, cache=prompt_cache,
                           stats=self.stats)
        self._active: list[Generation] = []
        self._cancelled: list[Generation] = []
        self._pending: list[Generation] = []
        self._scores: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._stepping = False
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="chinwag-engine", daemon=True)
        self._thread.start()

    @property
    def steps(self) -> int:
        """``llama_decode`` calls made by the step loop so far."""
        return self.timing.steps

    @property
    def active(self) -> tuple[Generation, ...]:
        """Generations holding a slot now."""
        with self._cond:
            return tuple(self._active)

    @property
    def waiting(self) -> int:
        """Generations waiting for a slot now."""
        with self._cond:
            return len(self._pending)

    # -- generation ----------------------------------------------------------------------------

    def submit(self, prompt: list[int], params: SamplingParams,
               grammar: str | None = None, *, reuse: bool = True,
               background: bool = False) -> Generation:
        """Check and register a prompt; tokens come from ``run(generation)``.

        ``reuse``: start from a free slot's kept KV cells when they share a prefix with the
        prompt (see ``slots``); otherwise the prompt is computed whole. ``background``: see
        ``Generation.background``.

        Raises:
            InvalidParams: the prompt has no tokens.
            ContextOverflow: the prompt does not leave room for one token of reply.
            SchemaError: the grammar was rejected.
        """
        if not prompt:
            raise InvalidParams("the prompt is empty", param="prompt")
        if len(prompt) >= self.n_ctx:
            raise ContextOverflow(len(prompt), self.n_ctx)
        sampler = Sampler(self.model.vocab, self.model.n_vocab, params, grammar,
                          history=prompt)
        return Generation(prompt=list(prompt), sampler=sampler, max_tokens=params.max_tokens,
                          reuse=reuse, background=background)

    def run(self, gen: Generation) -> Generator[int, None, None]:
        """Advance ``gen`` to its end, yielding each sampled token id as it comes.

        The step thread admits it when a slot is free; other threads' generations advance in
        the same ``llama_decode`` calls. Closing the iterator early, or ``cancel(gen)`` from
        another thread, cancels it (``finish_reason == "cancelled"``); its slot and sampler
        are freed after the step under way, if any.

        Raises:
            BackendError: ``llama_decode`` failed in a step ``gen`` was in (every generation
                in that step gets it), or the engine was closed.
        """
        with self._cond:
            if self._closing:
                raise BackendError("the engine is closed")
            self._pending.append(gen)
            self._cond.notify_all()
        try:
            while True:
                with self._cond:
                    while not gen.new_tokens and not gen.ended:
                        self._cond.wait()
                    token = gen.new_tokens.popleft() if gen.new_tokens else None
                if token is None:
                    break
                yield token
            if gen.error is not None:
                raise gen.error
        finally:
            with self._cond:
                if not gen.ended:
                    gen.finish_reason = "cancelled"
                    self.timing.cancelled += 1
                if gen in self._pending:
                    self._pending.remove(gen)
                if self._stepping:
                    self._cancelled.append(gen)  # the step thread frees it after its step
                else:
                    self._release(gen)
                self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no generation is running or waiting and every slot is free again (a
        finished generation's slot is freed when its reader has read its last token, a
        cancelled one's by the step thread after the step it was in); False if ``timeout``
        seconds passed first."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not (self._active or self._pending or self._cancelled or self._scores
                             or self._stepping) and len(self.slots.free) == self.n_seq_max,
                timeout)

    def cancel(self, gen: Generation) -> None:
        """Stop ``gen`` from any thread: its ``run`` returns at once if it is waiting for a
        slot, else after the step under way (finish reason ``cancelled``). No effect on a
        generation that has ended."""
        with self._cond:
            if not gen.ended:
                gen.finish_reason = "cancelled"
                self.timing.cancelled += 1
            self._cond.notify_all()

    def _loop(self) -> None:
        """The step thread: admit, score, step, until ``close``.

        The lock is held from the end of one step to the start of the next (consumers woken
        by a step wait for it without taking the interpreter away from this thread), and
        released while llama.cpp computes."""
        with self._cond:
            while True:
                self._sweep()
                score = self._scores.popleft() if self._scores and self.slots.free else None
                if score is None:
                    self._admit_pending()
                    if not self._active:
                        if self._closing:
                            return
                        self._cond.wait()
                        continue
                self._stepping = True
                self._cond.release()
                failure: BackendError | None = None
                try:
                    if score is not None:
                        score()
                    else:
                        self._step()
                except BackendError as e:
                    failure = e
                except Exception as e:  # a defect: fail this step's generations, keep serving
                    log.exception("an engine step failed")
                    failure = BackendError(f"the engine step failed: {type(e).__name__}: {e}")
                finally:
                    self._cond.acquire()
                    self._stepping = False
                if failure is not None:
                    self._fail_active(failure)
                self._sweep()
                self._cond.notify_all()

    def _admit_pending(self) -> None:
        """Give free slots to waiting generations, first come first served (under ``_cond``,
        with no step running: admission edits the KV cache)."""
        while self._pending and self.slots.free:
            gen = self._pending.pop(0)
            if gen.ended:  # cancelled while it waited
                continue
            claim = self.slots.claim(gen.prompt, reuse=gen.reuse)
            gen.seq_id = claim.slot
            gen.n_past = gen.n_prompt_done = gen.n_cached = claim.reused
            gen.fed = list(gen.prompt[:claim.reused])
            gen.cache_source = claim.source
            gen.admitted = True
            self.timing.admitted += 1
            self._active.append(gen)

    def _release(self, gen: Generation) -> None:
        """Free a generation's slot and sampler (called under ``_cond``, when no step is
        running). Its cells stay in the slot for a later prompt, unless a step failed."""
        if gen in self._active:
            self._active.remove(gen)
        if gen.admitted:
            gen.admitted = False
            self.slots.release(gen.seq_id, None if gen.error is not None else gen.fed)
        gen.sampler.close()

    def _sweep(self) -> None:
        """After a step: free the generations cancelled while it ran, and take ended ones
        out of the batch (their consumers may still be reading their last tokens)."""
        for gen in self._cancelled:
            self._release(gen)
        self._cancelled.clear()
        self._active = [g for g in self._active if not g.ended]

    def _fail_active(self, error: BackendError) -> None:
        """End every generation of the failed step with its own copy of ``error`` (under
        ``_cond``)."""
        for gen in self._active:
            if not gen.ended:
                gen.error = BackendError(str(error))
                self.timing.failed += 1

    def _step(self) -> None:
        started = time.perf_counter()
        batch, n, wants = self._batch, 0, []
        running = sorted((g for g in self._active if not g.ended), key=lambda g: g.seq_id)
        if any(g.prefilling and not g.background for g in running):  # a live prompt: alone
            running = [g for g in running if not g.background]
        for gen in running:  # decoding generations first, in slot order: one token each
            if not gen.prefilling:
                self._put(n, gen.last_token, gen.n_past, gen.seq_id, True)
                gen.fed.append(gen.last_token)
                wants.append((gen, n))
                gen.n_past += 1
                n += 1
        room = self.n_batch if n == 0 else min(self.n_batch, n + self.prefill_chunk)
        for gen in running:  # then prompt chunks, in the room left
            if gen.prefilling and n < room:
                start = gen.n_prompt_done
                chunk = gen.prompt[start:start + room - n]
                for tok in chunk:
                    self._put(n, tok, gen.n_past, gen.seq_id, False)
                    gen.n_past += 1
                    n += 1
                gen.n_prompt_done += len(chunk)
                gen.fed += chunk
                if not gen.prefilling:
                    batch.logits[n - 1] = 1
                    wants.append((gen, n - 1))
        if n == 0:
            return
        batch.n_tokens = n
        decode_start = time.perf_counter()
        rc = llama_cpp.llama_decode(self._ctx, batch)
        decoded = time.perf_counter()
        t = self.timing
        t.steps += 1
        t.batch_tokens += n
        t.decode_seconds += decoded - decode_start
        if rc != 0:
            raise BackendError(f"llama_decode failed with code {rc}: {recent_log()}")
        self.slots.settled()
        for gen, index in wants:
            self._accept(gen, gen.sampler.sample(self._ctx, index))
        now = time.perf_counter()
        t.sample_seconds += now - decoded
        t.step_seconds += now - started

    def _put(self, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        b = self._batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits

    def _accept(self, gen: Generation, token: int) -> None:
        if gen.ended:  # cancelled while the step ran
            return
        if self.model.is_eog(token):
            gen.finish_reason = "stop"
            return
        gen.n_generated += 1
        gen.last_token = token
        if gen.sampler.logprob is not None:
            gen.logprobs.append(gen.sampler.logprob)
        gen.new_tokens.append(token)
        if gen.n_generated >= gen.max_tokens or gen.n_past + 1 >= self.n_ctx:
            gen.finish_reason = "length"

    # -- scoring -------------------------------------------------------------------------------

    def logprobs(self, tokens: list[int], start: int) -> list[float]:
        """Natural-log probability of each of ``tokens[start:]`` given the tokens before it.

        Args:
            tokens: a whole token sequence (prompt then continuation).
            start: index of the first token to score (>= 1: the first token has no context).

        Raises:
            ContextOverflow: the tokens do not fit in the context window.
            InvalidParams: ``start`` is out of range.
            BackendError: ``llama_decode`` failed.
        """
        if not 1 <= start <= len(tokens):
            raise InvalidParams(f"start must be in [1, {len(tokens)}], got {start}")
        if len(tokens) > self.n_ctx:
            raise ContextOverflow(len(tokens), self.n_ctx)
        future: Future[list[float]] = Future()

        def score() -> None:  # on the step thread, with a slot free
            with self._cond:
                seq_id = self.slots.claim_empty()
            try:
                future.set_result(self._score(tokens, start, seq_id))
            except BaseException as e:  # handed to the caller
                future.set_exception(e)
            finally:
                with self._cond:
                    self.slots.release(seq_id, None)

        with self._cond:
            if self._closing:
                raise BackendError("the engine is closed")
            self._scores.append(score)
            self._cond.notify_all()
        return future.result()

    def _score(self, tokens: list[int], start: int, seq_id: int) -> list[float]:
        scores: list[float] = []
        for begin in range(0, len(tokens) - 1, self.n_batch):
            chunk = range(begin, min(begin + self.n_batch, len(tokens) - 1))
            for i, pos in enumerate(chunk):
                self._put(i, tokens[pos], pos, seq_id, pos >= start - 1)
            self._batch.n_tokens = len(chunk)
            rc = llama_cpp.llama_decode(self._ctx, self._batch)
            if rc != 0:
                raise BackendError(f"llama_decode failed with code {rc}: {recent_log()}")
            self.slots.settled()
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
            while self._stepping:
                self._cond.wait()
            self.slots.forget_kept()

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the step thread (generations still running fail with ``BackendError``), then
        free the context and batch, after saving the slots' kept cells to the prompt cache
        when it writes to disk (a restarted server finds them). Idempotent."""
        with self._cond:
            self._closing = True
            for gen in [*self._active, *self._pending]:
                if not gen.ended:
                    gen.error = BackendError("the engine was closed")
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        if self._ctx and self.cache is not None:
            with self._cond:
                if self.cache.persistent:
                    self.slots.stash_all()
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
