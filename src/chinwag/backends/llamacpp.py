"""The llama.cpp backend: a GGUF model run by chinwag's own engine (``chinwag.engine``).

The engine (and with it llama.cpp) is imported when a backend is built, so the config class
``LlamaCppLLM`` can be read without loading llama.cpp.
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from chinwag.backends.base import (
    BackendConfig,
    Capabilities,
    LanguageBackend,
    ModelInfo,
    continuation_choice,
)
from chinwag.backends.stops import StopEvents
from chinwag.cancellation import in_background, on_cancel
from chinwag.errors import ChinwagError, OutputInvalid
from chinwag.json_schema import for_grammar, json_problem
from chinwag.models import packaged_file, resolve_model
from chinwag.prompting import Speakers
from chinwag.types import (
    Choice,
    Done,
    EventStream,
    Message,
    SamplingParams,
    TokenEvent,
    TokenLogprob,
    Usage,
)

SCHEMA_ATTEMPTS = 3
"""Most generations of one request whose JSON Schema the grammar cannot wholly enforce."""

if TYPE_CHECKING:
    from chinwag.engine import Generation
    from chinwag.engine.sampler import SampledLogprob
    from chinwag.models import Progress
    from chinwag.settings import Settings


class LlamaCppLLM(BackendConfig):
    """An LLM config for a GGUF model run in-process by chinwag's engine (the default).

    Each field left out is taken from the settings (its namesake there; ``context_length``
    is ``n_ctx``), as are the settings this config has no field for (``prefill_chunk``, the
    KV cache's). A relative ``model`` is relative to the config file's folder; with
    ``package``, ``model`` is a file inside that installed Python package instead.
    """

    backend: Literal["llamacpp"]
    model: str | None = Field(None, description="GGUF file; default: the embedded model.")
    package: str | None = Field(
        None, description="An installed Python package holding the GGUF file (its import "
        "name); `model` is then the file's name inside that package.")
    hf_repo: str | None = None
    hf_file: str | None = None
    n_threads: int | None = Field(None, ge=1)
    n_batch: int | None = Field(None, ge=1)
    n_gpu_layers: Annotated[int, Field(ge=-1)] | Literal["auto"] | None = None
    parallel: int | None = Field(None, ge=1, le=64)

    @field_validator("package")
    @classmethod
    def _package_needs_model(cls, package: str | None, info: ValidationInfo) -> str | None:
        """A ``package`` without ``model`` is an error at the ``package`` key's line."""
        if package and not info.data.get("model"):
            raise ValueError(f"'package' ({package}) needs 'model': the GGUF file's name "
                             "inside that package")
        return package

    def _merged(self, settings: Settings, base_dir: Path | None) -> Settings:
        """The settings with this config's fields in their place (the model file's path
        made absolute)."""
        update: dict[str, Any] = self.arguments(
            exclude=("model_id", "context_length", "package"))
        if self.context_length is not None:
            update["n_ctx"] = self.context_length
        if self.package and self.model:
            update["model"] = str(packaged_file(self.package, self.model))
        elif (self.model and base_dir is not None
              and not Path(self.model).expanduser().is_absolute()):
            update["model"] = str(base_dir / self.model)
        return settings.model_copy(update=update)

    def _path(self, settings: Settings, base_dir: Path | None) -> Path:
        """The GGUF file this config names, without loading it (the embedded model is
        assembled if it is not yet)."""
        return resolve_model(self._merged(settings, base_dir))

    def memory_estimate(self, settings: Settings, base_dir: Path | None = None) -> int:
        """The GGUF file's size (its weights; the KV cache is measured once loaded), 0 when
        the file cannot be found yet (it is reported when loading)."""
        try:
            return self._path(settings, base_dir).stat().st_size
        except (ChinwagError, OSError):
            return 0

    def build(self, settings: Settings, *, base_dir: Path | None = None,
              progress: Progress | None = None) -> LlamaCppBackend:
        """The backend on the GGUF file the config names, else the one the settings name:
        the one path from settings to a ``LlamaCppBackend`` (``load_backend`` comes here too).

        Raises:
            ModelNotFound, ModelLoadError, ConfigError, BackendError: see ``resolve_model``,
                ``packaged_file`` and ``LlamaCppBackend``.
        """
        merged = self._merged(settings, base_dir)
        return LlamaCppBackend(
            resolve_model(merged, progress), n_ctx=merged.n_ctx, n_batch=merged.n_batch,
            n_threads=merged.n_threads, n_gpu_layers=merged.n_gpu_layers,
            chat_format=merged.chat_format, n_parallel=merged.parallel,
            prefill_chunk=merged.prefill_chunk, kv_cache_ram=int(merged.kv_cache_ram),
            kv_cache_dir=merged.kv_cache_dir, kv_cache_disk=int(merged.kv_cache_disk))


class LlamaCppBackend(LanguageBackend):
    """A GGUF model on llama.cpp, through chinwag's engine (not llama-cpp-python's ``Llama``).

    Args:
        model_path: the GGUF file.
        n_ctx: context window, tokens.
        n_batch: most prompt tokens per decode call.
        n_threads: CPU threads (default: all cores).
        n_gpu_layers: layers to offload to a GPU: "auto" = all when llama.cpp can offload,
            else none; -1 = all; a number wins (``chinwag.engine.model.gpu_layers``).
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

    capabilities = Capabilities(json_schema=True, choose=True, exact_token_count=True,
                                tools="constrained")

    def __init__(self, model_path: Path | str, *, n_ctx: int = 4096, n_batch: int = 512,
                 n_threads: int | None = None, n_gpu_layers: int | Literal["auto"] = "auto",
                 chat_format: str | None = None, n_parallel: int = 1,
                 prefill_chunk: int = 128, kv_cache_ram: int = 0,
                 kv_cache_dir: Path | None = None, kv_cache_disk: int = 4 << 30) -> None:
        from chinwag.engine import Engine, LlamaModel
        from chinwag.engine.prompt_cache import PromptCache

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
            self._set_chat_format(chat_format, self.model.chat_template, self.model.bos_text,
                                  self.model.eos_text)
        except BaseException:
            self.model.close()
            raise

    @property
    def context_length(self) -> int:
        return self.engine.n_ctx

    @property
    def max_parallel(self) -> int:
        return self.engine.n_seq_max

    def memory_bytes(self) -> int:
        """The weights plus the KV cache of every slot (``n_ctx`` tokens each, see
        ``LlamaModel.kv_bytes_per_token``), plus the RAM kept for idle conversations' KV
        states when full; llama.cpp's compute buffers are left out."""
        cache = self.engine.cache
        return (self.model.size_bytes + self.model.kv_bytes_per_token * self.engine.n_ctx
                * self.engine.n_seq_max + (cache.ram_used if cache is not None else 0))

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

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        """Stream the continuation of ``prompt``. With ``params.json_schema``, the output is
        constrained by the schema's grammar; where the grammar cannot enforce every keyword
        (``json_schema.for_grammar``) the text is held back, checked, and generated again
        (another seed) while the ``max_tokens`` budget lasts, up to ``SCHEMA_ATTEMPTS``
        times; a text that still fails, or a stream whose finished text fails, raises
        ``OutputInvalid`` with the text. A text cut by ``max_tokens`` comes back as it is
        (finish reason ``length``).

        With ``params.logprobs`` set, each ``TokenEvent`` carries the ``TokenLogprob`` of the
        tokens whose text ends in it (``stops.StopEvents``; the model's raw distribution,
        see ``engine.sampler``); tokens cut by a stop string have none, and a JSON Schema's
        held-back text carries those of its accepted attempt only.

        Raises:
            ContextOverflow, InvalidParams, SchemaError: see ``Engine.submit``,
                ``grammar_for_schema``.
            OutputInvalid: see above.
        """
        from chinwag.engine.sampler import grammar_for_schema

        tokens = self.model.tokenize(prompt)
        schema = params.json_schema
        if schema is None:
            return self._run(tokens, params, None)
        grammar = grammar_for_schema(schema)
        if for_grammar(schema)[1]:
            return _checked(self._run(tokens, params, grammar), schema)
        return self._attempts(tokens, params, grammar, schema)

    def _run(self, tokens: list[int], params: SamplingParams,
             grammar: str | None) -> EventStream:
        gen = self.engine.submit(tokens, params, grammar, reuse=params.cache_prompt,
                                 background=in_background())
        on_cancel(lambda: self.engine.cancel(gen))
        return self._stream(gen, params.stop)

    def _attempts(self, tokens: list[int], params: SamplingParams, grammar: str,
                  schema: dict[str, Any]) -> EventStream:
        first = self._run(tokens, params, grammar)  # errors of the request raise here
        used, attempts = 0, 1 if params.temperature == 0 else SCHEMA_ATTEMPTS
        for attempt in range(attempts):
            stream = first if attempt == 0 else self._run(tokens, params.with_(
                max_tokens=params.max_tokens - used,
                seed=None if params.seed is None else params.seed + attempt), grammar)
            text, done = "", None
            records: list[TokenLogprob] = []
            for event in stream:
                if isinstance(event, TokenEvent):
                    text += event.text
                    records += event.logprobs
                else:
                    done = event
            assert done is not None
            used += done.usage.completion_tokens
            usage = Usage(done.usage.prompt_tokens, used, done.usage.cached_tokens)
            problem = None if done.finish_reason == "length" else json_problem(text, schema)
            if problem is None:
                if text or records:
                    yield TokenEvent(text, tuple(records))  # the accepted attempt's records
                yield Done(done.finish_reason, usage)
                return
            if used >= params.max_tokens:
                break
        raise OutputInvalid(f"the generated JSON does not match the schema after {attempt + 1} "
                            f"attempt(s) ({problem}): {text[:300]!r}", text=text,
                            problem=problem or "")

    def _stream(self, gen: Generation,
                stop: Sequence[str]) -> Generator[TokenEvent | Done, None, None]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopEvents(stop)
        piece = self.model.piece
        tokens = self.engine.run(gen)
        try:
            for n, token in enumerate(tokens):
                records = (self._token_logprob(gen.logprobs[n]),) if gen.logprobs else ()
                event = scanner.feed(decoder.decode(piece(token)), records)
                if event is not None:
                    yield event
                if scanner.stopped:
                    break
            tail = scanner.finish(decoder.decode(b"", final=True))
            if tail is not None:
                yield tail
        finally:
            tokens.close()
        reason = "stop" if scanner.stopped else gen.finish_reason or "stop"
        yield Done(reason, Usage(len(gen.prompt), gen.n_generated, gen.n_cached))

    def _token_logprob(self, sampled: SampledLogprob) -> TokenLogprob:
        """The engine's record with the tokens' text and bytes (``TokenLogprob``): the text
        is what of the bytes decodes as whole UTF-8 characters, as llama-server's
        ``validate_utf8`` leaves it."""
        def record(token: int, logprob: float,
                   top: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
            raw = self.model.piece(token)
            return TokenLogprob(raw.decode("utf-8", errors="ignore"), logprob, tuple(raw), top)

        return record(sampled.token, sampled.logprob,
                      tuple(record(t, logprob) for t, logprob in sampled.top))

    def _choose(self, messages: Sequence[Message], options: Sequence[str],
                speakers: Speakers) -> Choice:
        return self.choose_continuation(self.render(messages, speakers).text, options)

    def choose_continuation(self, prompt: str, options: Sequence[str]) -> Choice:
        """The option most likely to follow ``prompt`` as raw text.

        Each option's score is the sum of the log-probabilities of the tokens it adds to the
        prompt (tokenizing ``prompt + option`` so merges at the seam are as the model sees them).

        Raises:
            InvalidParams: no options, or an empty option.
            ContextOverflow: the prompt plus an option does not fit.
        """
        return continuation_choice(prompt, options, self.model.tokenize, self.engine.logprobs)

    def info(self) -> ModelInfo:
        path = self.model.path
        return ModelInfo(
            name=path.name.removesuffix(".gguf"), path=str(path), size_bytes=path.stat().st_size,
            parameters=self.model.n_params, n_ctx=self.engine.n_ctx,
            n_ctx_train=self.model.n_ctx_train, chat_format=self.chat_format.name,
            extra={"description": self.model.description,
                   "architecture": self.model.meta("general.architecture") or "?",
                   "threads": self.engine.n_threads, "device": self.model.device})

    def close(self) -> None:
        self.engine.close()
        self.model.close()


def _checked(stream: EventStream, schema: dict[str, Any]) -> EventStream:
    """``stream`` as it is, with its finished text checked against ``schema`` at the end (a
    grammar that should have enforced it; a text cut by ``max_tokens`` is not checked).

    Raises:
        OutputInvalid: the finished text does not match.
    """
    text = ""
    for event in stream:
        if isinstance(event, TokenEvent):
            text += event.text
        elif event.finish_reason != "length":
            problem = json_problem(text, schema)
            if problem is not None:
                raise OutputInvalid(f"the generated JSON does not match the schema "
                                    f"({problem}): {text[:300]!r}", text=text, problem=problem)
        yield event
