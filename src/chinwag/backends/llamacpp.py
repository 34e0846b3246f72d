"""The llama.cpp backend: a GGUF model run by chinwag's own engine (``chinwag.engine``)."""

from __future__ import annotations

import codecs
import dataclasses
import math
from collections.abc import Generator, Sequence
from pathlib import Path

from chinwag.backends.base import Capabilities, LanguageBackend, ModelInfo
from chinwag.backends.stops import StopScanner
from chinwag.cancellation import on_cancel
from chinwag.engine import Engine, Generation, LlamaModel
from chinwag.engine.prompt_cache import PromptCache
from chinwag.engine.sampler import grammar_for_schema
from chinwag.errors import InvalidParams
from chinwag.prompting import ChatFormat, Speakers, resolve_chat_format
from chinwag.types import Choice, Done, EventStream, Message, SamplingParams, TokenEvent, Usage


class LlamaCppBackend(LanguageBackend):
    """A GGUF model on llama.cpp, through chinwag's engine (not llama-cpp-python's ``Llama``).

    Args:
        model_path: the GGUF file.
        n_ctx: context window, tokens.
        n_batch: most prompt tokens per decode call.
        n_threads: CPU threads (default: all cores).
        n_gpu_layers: layers to offload to a GPU (-1 = all).
        chat_format: force a named chat format; default: the model's own template, else the
            persona's named format, else the transcript format.
        n_parallel: sequences generated at once (continuous batching; each gets ``n_ctx``
            tokens of KV cache). Callers beyond it wait for a slot.
        prefill_chunk: most prompt tokens of one sequence per step while others decode.
        kv_cache_ram: bytes of RAM for idle sequences' KV state (0: none).
        kv_cache_dir: folder for idle sequences' KV state files (survives restarts), or None.
        kv_cache_disk: most bytes of files in ``kv_cache_dir``.

    Raises:
        ModelNotFound, ModelLoadError: the file is missing or not a loadable GGUF.
        ConfigError: an unknown ``chat_format``.
        BackendError: llama.cpp could not create a context (e.g. out of memory).
    """

    capabilities = Capabilities(json_schema=True, choose=True, exact_token_count=True)

    def __init__(self, model_path: Path | str, *, n_ctx: int = 4096, n_batch: int = 512,
                 n_threads: int | None = None, n_gpu_layers: int = 0,
                 chat_format: str | None = None, n_parallel: int = 1,
                 prefill_chunk: int = 128, kv_cache_ram: int = 0,
                 kv_cache_dir: Path | None = None, kv_cache_disk: int = 4 << 30) -> None:
        self.model = LlamaModel(Path(model_path), n_gpu_layers=n_gpu_layers)
        try:
            cache = None
            if kv_cache_ram > 0 or kv_cache_dir is not None:
                cache = PromptCache(kv_cache_ram, kv_cache_dir,
                                    fingerprint=self.model.fingerprint(),
                                    disk_bytes=kv_cache_disk, n_swa=self.model.n_swa)
            self.engine = Engine(self.model, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads,
                                 n_seq_max=n_parallel, prefill_chunk=prefill_chunk,
                                 prompt_cache=cache)
            self._forced_format = chat_format
            self.chat_format = self.format_for(None)
        except BaseException:
            self.model.close()
            raise

    @property
    def context_length(self) -> int:
        return self.engine.n_ctx

    @property
    def max_parallel(self) -> int:
        return self.engine.n_seq_max

    def cache_stats(self) -> dict[str, int]:
        cache = self.engine.cache
        return {**dataclasses.asdict(self.engine.stats),
                "ram_bytes": cache.ram_used if cache is not None else 0,
                "entries": len(cache) if cache is not None else 0}

    def engine_stats(self) -> dict[str, float]:
        engine = self.engine
        return {**dataclasses.asdict(engine.timing), "slot_moves": engine.slots.moves,
                "active": len(engine.active), "waiting": engine.waiting}

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a whole prompt (BOS included when the model adds one)."""
        return len(self.model.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as a whole prompt (BOS included when the model adds one)."""
        return self.model.tokenize(text)

    def format_for(self, persona_format: str | None) -> ChatFormat:
        return resolve_chat_format(model_template=self.model.chat_template,
                                   bos_token=self.model.bos_text, eos_token=self.model.eos_text,
                                   requested=self._forced_format, persona_format=persona_format)

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        tokens = self.model.tokenize(prompt)
        grammar = None if params.json_schema is None else grammar_for_schema(params.json_schema)
        gen = self.engine.submit(tokens, params, grammar, reuse=params.cache_prompt)
        on_cancel(lambda: self.engine.cancel(gen))
        return self._stream(gen, params.stop)

    def _stream(self, gen: Generation,
                stop: Sequence[str]) -> Generator[TokenEvent | Done, None, None]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopScanner(stop)
        piece = self.model.piece
        tokens = self.engine.run(gen)
        try:
            for token in tokens:
                text = scanner.feed(decoder.decode(piece(token)))
                if text:
                    yield TokenEvent(text)
                if scanner.stopped:
                    break
            tail = scanner.feed(decoder.decode(b"", final=True)) + scanner.flush()
            if tail:
                yield TokenEvent(tail)
        finally:
            tokens.close()
        reason = "stop" if scanner.stopped else gen.finish_reason or "stop"
        yield Done(reason, Usage(len(gen.prompt), gen.n_generated, gen.n_cached))

    def choose(self, messages: Sequence[Message], options: Sequence[str],
               *, speakers: Speakers = Speakers()) -> Choice:
        return self.choose_continuation(self.render(messages, speakers).text, options)

    def choose_continuation(self, prompt: str, options: Sequence[str]) -> Choice:
        """The option most likely to follow ``prompt`` as raw text.

        Each option's score is the sum of the log-probabilities of the tokens it adds to the
        prompt (tokenizing ``prompt + option`` so merges at the seam are as the model sees them).

        Raises:
            InvalidParams: no options, or an empty option.
            ContextOverflow: the prompt plus an option does not fit.
        """
        if not options:
            raise InvalidParams("choose needs at least one option", param="options")
        if any(not o for o in options):
            raise InvalidParams("options must be non-empty strings", param="options")
        base = self.model.tokenize(prompt)
        scores: list[float] = []
        for option in options:
            full = self.model.tokenize(prompt + option)
            shared = next((i for i, (a, b) in enumerate(zip(base, full, strict=False)) if a != b),
                          min(len(base), len(full)))
            start = max(1, min(shared, len(full) - 1))
            scores.append(math.fsum(self.engine.logprobs(full, start)))
        best = max(range(len(options)), key=scores.__getitem__)
        return Choice(index=best, option=options[best], logprob=scores[best], scores=scores)

    def info(self) -> ModelInfo:
        path = self.model.path
        return ModelInfo(
            name=path.name.removesuffix(".gguf"), path=str(path), size_bytes=path.stat().st_size,
            parameters=self.model.n_params, n_ctx=self.engine.n_ctx,
            n_ctx_train=self.model.n_ctx_train, chat_format=self.chat_format.name,
            extra={"description": self.model.description,
                   "architecture": self.model.meta("general.architecture") or "?",
                   "threads": self.engine.n_threads})

    def close(self) -> None:
        self.engine.close()
        self.model.close()
