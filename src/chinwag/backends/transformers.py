"""The Hugging Face transformers backend: a causal LM run by PyTorch on the CPU.

``TransformersBackend("path/to/folder")`` loads a model saved with ``save_pretrained`` (or a
hub id already in the local Hugging Face cache, or a GGUF file that transformers can
de-quantise). Nothing is ever downloaded. Generation is a plain token-by-token loop over the
model's ``forward`` with its KV cache, so closing a stream stops it between two tokens, and
JSON Schema output is enforced by llguidance masking the logits at every step.

torch, transformers and llguidance are imported only when a backend is built, so
``import chinwag.backends`` (and the config class ``TransformersLLM``) works without the
``transformers`` extra.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
from collections import Counter
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from chinwag.backends.base import (
    BackendConfig,
    Capabilities,
    LanguageBackend,
    ModelInfo,
    continuation_choice,
    refuse_unsupported,
)
from chinwag.backends.stops import StopScanner
from chinwag.errors import (
    BackendError,
    ConfigError,
    ContextOverflow,
    InvalidParams,
    ModelLoadError,
    ModelNotFound,
    SchemaError,
)
from chinwag.json_schema import check_json_schema
from chinwag.prompting import Speakers, resolve_chat_format
from chinwag.types import (
    Choice,
    Done,
    EventStream,
    FinishReason,
    Message,
    SamplingParams,
    TokenEvent,
    Usage,
)

if TYPE_CHECKING:
    import torch
    from llguidance import LLMatcher, LLTokenizer

    from chinwag.models import Progress
    from chinwag.settings import Settings

CONTEXT_CAP = 8192
"""Most tokens of context used by default (when ``context_length`` is not given), even if the
model was trained on more: attention on the CPU grows with the square of the prompt."""

FALLBACK_CONTEXT = 2048
"""Context window, in tokens, for a model whose config gives no ``max_position_embeddings``."""

DTYPES = ("float32", "bfloat16", "float16")
"""The weight types ``dtype`` accepts."""

INSTALL_HINT = "pip install 'chinwag[transformers]'"

# Whitespace allowed between JSON tokens: nothing, one space, or a newline and an indent of at
# most 20 -- the same bound the llama.cpp backend puts on its grammar, so a weak model cannot
# spend its whole budget on blank lines.
_JSON_WHITESPACE = r"(?: |\n[ \t]{0,20})?"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_DETOKENIZE_CONTEXT = 4  # prompt tokens decoded before the reply so its first word keeps its space
_HONOURED = ("presence_penalty", "frequency_penalty", "logit_bias")  # of OPTIONAL_PARAMS


class TransformersLLM(BackendConfig):
    """An LLM config for a Hugging Face model through transformers on the CPU (``pip install
    'chinwag[transformers]'``). ``model_id`` is a local folder or a hub id in the local cache;
    ``n_threads`` left out is the settings'."""

    backend: Literal["transformers"]
    model_id: str
    gguf_file: str | None = Field(None, description="Load this GGUF from model_id's folder.")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    n_threads: int | None = Field(None, ge=1)

    def build(self, settings: Settings, *, base_dir: Path | None = None,
              progress: Progress | None = None) -> TransformersBackend:
        return TransformersBackend(self.model_id,
                                   **self.arguments(exclude=("model_id", "n_threads")),
                                   n_threads=self.n_threads or settings.n_threads)


def _import_ml() -> tuple[Any, Any]:
    """``(torch, transformers)``, or ConfigError naming the extra to install."""
    try:
        import torch
        import transformers
    except ImportError as e:
        raise ConfigError(f"the transformers backend needs torch and transformers ({e}); "
                          f"run: {INSTALL_HINT}") from None
    return torch, transformers


def has_llguidance() -> bool:
    """Whether llguidance (JSON Schema enforcement) can be imported."""
    try:
        import llguidance  # noqa: F401
    except ImportError:
        return False
    return True


def locate_model(model: str | Path, gguf_file: str | None = None) -> tuple[Path, str | None]:
    """Find the local folder of ``model`` without touching the network.

    Args:
        model: a folder saved with ``save_pretrained``; a hub id (``owner/name``) already in
            the local Hugging Face cache; or a ``.gguf`` file (then ``gguf_file`` is its name).
        gguf_file: the name of a GGUF file inside the folder, or None.

    Returns:
        ``(folder, gguf_file)``.

    Raises:
        ModelNotFound: no such folder or file, a hub id not in the cache, or ``gguf_file``
            not in the folder; the message says how to get it.
    """
    path = Path(model).expanduser()
    if path.is_file():
        if gguf_file is None and path.suffix == ".gguf":
            return path.parent, path.name
        raise ModelNotFound(f"{path} is a file; give the model's folder (the one holding "
                            "config.json), or a .gguf file")
    if not path.is_dir():
        path = _from_hf_cache(str(model))
    if gguf_file is not None and not (path / gguf_file).is_file():
        raise ModelNotFound(f"no GGUF file {gguf_file!r} in {path}")
    return path, gguf_file


def _from_hf_cache(repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` in the local Hugging Face cache (never downloads)."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    if not _HUB_ID.fullmatch(repo_id):
        raise ModelNotFound(f"no model folder at {repo_id} (and it is not a Hugging Face repo "
                            "id of the form owner/name)")
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        cache = huggingface_hub.constants.HF_HUB_CACHE
        raise ModelNotFound(
            f"{repo_id!r} is neither a local folder nor a Hugging Face repo in the local cache "
            f"({cache}). Download it once where there is network (hf download {repo_id}), or "
            "pass the folder of a model saved with save_pretrained.") from None


def _weights_size(folder: Path, gguf_file: str | None) -> int:
    """Bytes of weight files: the GGUF file, or the folder's safetensors/bin files."""
    if gguf_file is not None:
        return (folder / gguf_file).stat().st_size
    return sum(p.stat().st_size for p in folder.iterdir()
               if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))


class TransformersBackend(LanguageBackend):
    """A Hugging Face causal LM through transformers, on the CPU build of torch.

    One generation runs at a time (``max_parallel`` is 1); other callers wait for it. There is
    no prompt cache across requests (``SamplingParams.cache_prompt`` is ignored), so
    ``Usage.cached_tokens`` is always 0.

    Args:
        model: a local folder saved with ``save_pretrained``, a hub id (``owner/name``) that
            is already in the local Hugging Face cache, or a ``.gguf`` file. Nothing is
            downloaded (``local_files_only=True``).
        gguf_file: the name of a GGUF file inside the folder ``model``, loaded (and
            de-quantised to ``dtype``) through transformers' GGUF support.
        context_length: the context window, in tokens (prompt plus reply). Default: the
            config's ``max_position_embeddings`` capped at ``CONTEXT_CAP`` (8192), or
            ``FALLBACK_CONTEXT`` (2048) when the config has none. A larger value than the
            model was trained on is allowed (as llama.cpp allows it) but output degrades.
        chat_format: force a named chat format (or ``"transcript"``); default: the
            tokenizer's own ``chat_template``, else the persona's format, else a transcript.
        n_threads: CPU threads for torch (``torch.set_num_threads``, a process-wide
            setting); default: torch's own choice.
        dtype: weight type, one of ``DTYPES``.

    Raises:
        ConfigError: torch/transformers are not installed, an unknown ``dtype`` or
            ``chat_format``, or ``context_length``/``n_threads`` < 1.
        ModelNotFound: see ``locate_model``.
        ModelLoadError: the folder or GGUF file exists but transformers cannot load it.
        FormatError: the tokenizer's chat template does not compile.
    """

    def __init__(self, model: str | Path, *, gguf_file: str | None = None,
                 context_length: int | None = None, chat_format: str | None = None,
                 n_threads: int | None = None, dtype: str = "float32") -> None:
        torch, _ = _import_ml()
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if context_length is not None and context_length < 1:
            raise ConfigError(f"context_length must be >= 1, got {context_length}")
        if n_threads is not None:
            if n_threads < 1:
                raise ConfigError(f"n_threads must be >= 1, got {n_threads}")
            torch.set_num_threads(n_threads)
        if chat_format:  # an unknown name fails now, not after a long load
            resolve_chat_format(model_template=None, requested=chat_format)
        self._folder, self._gguf_file = locate_model(model, gguf_file)
        self._name = (Path(self._gguf_file).stem if self._gguf_file
                      else str(model) if not Path(model).expanduser().is_dir()
                      else self._folder.name)
        self._dtype = dtype
        self._model, self._tokenizer = self._load(getattr(torch, dtype))
        config = self._model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        trained = getattr(text_config, "max_position_embeddings", None)
        self._n_ctx_train: int | None = int(trained) if trained else None
        self._n_ctx = context_length or (min(self._n_ctx_train, CONTEXT_CAP)
                                         if self._n_ctx_train else FALLBACK_CONTEXT)
        self._architecture = str(getattr(text_config, "model_type", None)
                                 or getattr(config, "model_type", "?"))
        self._n_params = sum(p.numel() for p in self._model.parameters())
        self._eos_ids = self._end_tokens()
        self._bos_text = self._tokenizer.bos_token or ""
        self._keeps_logits = _accepts_logits_to_keep(self._model)
        self._lock = threading.Lock()
        self._guide_lock = threading.Lock()
        self._lltokenizer: LLTokenizer | None = None
        guided = has_llguidance()
        self.capabilities = Capabilities(json_schema=guided, choose=True,
                                         exact_token_count=True,
                                         tools="constrained" if guided else "none")
        template = getattr(self._tokenizer, "chat_template", None)
        if isinstance(template, dict):  # several named templates: use the default one
            template = template.get("default")
        self._set_chat_format(chat_format, template if isinstance(template, str) else None,
                              self._tokenizer.bos_token or "", self._tokenizer.eos_token or "")

    def _load(self, torch_dtype: Any) -> tuple[Any, Any]:
        """The model (eval mode) and tokenizer, from local files only.

        Raises:
            ModelLoadError: transformers refused the folder or GGUF file.
        """
        _, transformers = _import_ml()
        kwargs: dict[str, Any] = {"local_files_only": True}
        if self._gguf_file is not None:
            kwargs["gguf_file"] = self._gguf_file
        where = self._folder / self._gguf_file if self._gguf_file else self._folder
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self._folder, **kwargs)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                self._folder, dtype=torch_dtype, **kwargs)
        except Exception as e:  # transformers raises OSError, ValueError, KeyError, ...
            raise ModelLoadError(f"transformers could not load {where}: "
                                 f"{type(e).__name__}: {_first_line(str(e))}") from None
        model.eval()
        tokenizer.model_max_length = 1 << 62  # we check lengths against n_ctx ourselves
        return model, tokenizer

    def _end_tokens(self) -> frozenset[int]:
        """Token ids that end a reply: the tokenizer's EOS and the generation config's."""
        ids: set[int] = set()
        for value in (self._tokenizer.eos_token_id,
                      getattr(self._model.generation_config, "eos_token_id", None)):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list | tuple):
                ids.update(int(v) for v in value)
        return frozenset(ids)

    @property
    def context_length(self) -> int:
        return self._n_ctx

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a whole prompt (BOS included when the tokenizer adds one)."""
        return len(self.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as a whole prompt: the tokenizer's special tokens are added
        (BOS for most models) unless the text already starts with the BOS token's text, as a
        rendered chat template does; special-token text in ``text`` becomes those tokens."""
        add = not (self._bos_text and text.startswith(self._bos_text))
        return list(self._tokenizer.encode(text, add_special_tokens=add))

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        """Stream a raw continuation of ``prompt`` (see ``LanguageBackend.generate``).

        The reply ends with ``stop`` at an end-of-sequence token, a stop string, or when a
        JSON Schema's document is complete; with ``length`` after ``params.max_tokens``
        tokens or when prompt plus reply fill the context window.

        Raises:
            InvalidParams: the prompt has no tokens.
            ContextOverflow: the prompt has ``context_length`` tokens or more.
            SchemaError: ``params.json_schema`` is not valid or cannot be enforced.
            BackendError: the backend was closed, or the model failed.
            InvalidParams: ``logprobs`` asked for (not reported by this backend), or a
                ``logit_bias`` token outside the vocabulary (on the first token).
        """
        refuse_unsupported(params, _HONOURED, self._name)
        model = self._require_model()
        ids = self.tokenize(prompt)
        if not ids:
            raise InvalidParams("the prompt is empty", param="prompt")
        if len(ids) >= self._n_ctx:
            raise ContextOverflow(len(ids), self._n_ctx)
        matcher = None if params.json_schema is None else self._matcher(params.json_schema)
        return self._stream(model, ids, params, matcher)

    def _stream(self, model: Any, ids: list[int], params: SamplingParams,
                matcher: LLMatcher | None) -> Generator[TokenEvent | Done, None, None]:
        room = min(params.max_tokens, self._n_ctx - len(ids))
        scanner = StopScanner(params.stop)
        detokenizer = _Detokenizer(self._tokenizer, ids[-_DETOKENIZE_CONTEXT:])
        n_generated = 0
        reason: FinishReason = "stop"
        with self._lock:
            tokens = self._tokens(model, ids, params, matcher)
            try:
                for token in tokens:
                    n_generated += 1
                    text = scanner.feed(detokenizer.add(token))
                    if text:
                        yield TokenEvent(text)
                    if scanner.stopped:
                        break
                    if n_generated >= room:
                        reason = "length"
                        break
                tail = scanner.feed(detokenizer.flush()) + scanner.flush()
                if tail:
                    yield TokenEvent(tail)
            finally:
                tokens.close()
        yield Done("stop" if scanner.stopped else reason, Usage(len(ids), n_generated))

    def _tokens(self, model: Any, ids: list[int], params: SamplingParams,
                matcher: LLMatcher | None) -> Generator[int, None, None]:
        """Sampled token ids, one per forward pass over the KV cache, until an end token or
        the end of the grammar (end tokens are not yielded). Never ends by itself otherwise:
        the caller stops it (``close``) at its token budget."""
        import torch

        seed = params.seed if params.seed is not None else secrets.randbits(63)
        generator = torch.Generator().manual_seed(seed)
        history = list(ids)
        feed = torch.tensor([ids], dtype=torch.long)
        past: Any = None
        while True:
            with torch.inference_mode():
                logits, past = self._forward(model, feed, past)
                if matcher is not None:
                    _apply_grammar(logits, matcher)
                token = sample_token(logits, params, history, generator)
            if token in self._eos_ids:
                return
            if matcher is not None and not matcher.consume_token(token):
                raise BackendError("the JSON grammar refused a token: "
                                   f"{_first_line(matcher.get_error())}")
            history.append(token)
            yield token
            if matcher is not None and matcher.is_stopped():
                return
            feed = torch.tensor([[token]], dtype=torch.long)

    def _forward(self, model: Any, feed: torch.Tensor, past: Any) -> tuple[torch.Tensor, Any]:
        """Logits (float32, shape ``[vocab]``) after the last token of ``feed``, and the
        updated KV cache."""
        extra = {"logits_to_keep": 1} if self._keeps_logits else {}
        try:
            out = model(input_ids=feed, past_key_values=past, use_cache=True, **extra)
        except (RuntimeError, IndexError, ValueError) as e:
            raise BackendError(f"the model failed: {type(e).__name__}: {e}") from None
        return out.logits[0, -1].float(), out.past_key_values

    def _matcher(self, schema: dict[str, Any]) -> LLMatcher:
        """An llguidance matcher for documents valid against ``schema`` (``{}``: any object).

        Raises:
            SchemaError: not a valid JSON Schema, llguidance is missing, or the schema uses
                what llguidance cannot enforce.
        """
        check_json_schema(schema)
        try:
            import llguidance
        except ImportError:
            raise SchemaError("JSON Schema output is not supported without llguidance; "
                              f"run: {INSTALL_HINT}") from None
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema or {"type": "object"}, overrides={"whitespace_pattern": _JSON_WHITESPACE})
        matcher = llguidance.LLMatcher(self._guidance_tokenizer(), grammar, log_level=0)
        if matcher.is_error():
            raise SchemaError(f"this JSON Schema is not supported: {matcher.get_error()[:500]}")
        return matcher

    def _guidance_tokenizer(self) -> LLTokenizer:
        """The tokenizer in llguidance's form, built once (about a second for a large vocab).

        Raises:
            SchemaError: the tokenizer is not a fast (Rust) tokenizer, which llguidance needs.
        """
        with self._guide_lock:
            if self._lltokenizer is None:
                import llguidance.hf

                try:
                    self._lltokenizer = llguidance.hf.from_tokenizer(
                        self._tokenizer, eos_token=sorted(self._eos_ids) or None)
                except (ValueError, TypeError) as e:
                    raise SchemaError("JSON Schema output is not supported with this "
                                      f"tokenizer: {e}") from None
            return self._lltokenizer

    def _choose(self, messages: Sequence[Message], options: Sequence[str],
                speakers: Speakers) -> Choice:
        return self.choose_continuation(self.render(messages, speakers).text, options)

    def choose_continuation(self, prompt: str, options: Sequence[str]) -> Choice:
        """The option most likely to follow ``prompt`` as raw text.

        Each option's score is the sum of the natural-log probabilities of the tokens it adds
        to the prompt (tokenizing ``prompt + option`` so merges at the seam are as the model
        sees them); one forward pass per option.

        Raises:
            InvalidParams: no options, or an empty option.
            ContextOverflow: the prompt plus an option does not fit in the context window.
            BackendError: the backend was closed, or the model failed.
        """
        model = self._require_model()
        return continuation_choice(prompt, options, self.tokenize,
                                   lambda tokens, start: self._logprobs(model, tokens, start))

    def _logprobs(self, model: Any, tokens: list[int], start: int) -> list[float]:
        """Natural-log probability of each of ``tokens[start:]`` given the tokens before it,
        from one forward pass over ``tokens`` (a prompt then its continuation; ``start`` >= 1:
        the first token has no context).

        Raises:
            InvalidParams: ``start`` is out of range.
            ContextOverflow: the tokens do not fit in the context window.
            BackendError: the model failed.
        """
        import torch

        if not 1 <= start <= len(tokens):
            raise InvalidParams(f"start must be in [1, {len(tokens)}], got {start}")
        if len(tokens) > self._n_ctx:
            raise ContextOverflow(len(tokens), self._n_ctx)
        keep = len(tokens) - start + 1
        extra = {"logits_to_keep": keep} if self._keeps_logits else {}
        with self._lock, torch.inference_mode():
            try:
                out = model(input_ids=torch.tensor([tokens], dtype=torch.long),
                            use_cache=False, **extra)
            except (RuntimeError, IndexError, ValueError) as e:
                raise BackendError(f"the model failed: {type(e).__name__}: {e}") from None
            logits = out.logits[0, -keep:-1].float()
            logp = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(tokens[start:], dtype=torch.long)
            return [float(x) for x in logp.gather(1, target[:, None])[:, 0]]

    def info(self) -> ModelInfo:
        import torch

        path = self._folder / self._gguf_file if self._gguf_file else self._folder
        return ModelInfo(
            name=self._name, n_ctx=self._n_ctx, chat_format=self.chat_format.name,
            path=str(path), size_bytes=_weights_size(self._folder, self._gguf_file),
            parameters=self._n_params, n_ctx_train=self._n_ctx_train,
            extra={"architecture": self._architecture, "dtype": self._dtype,
                   "threads": torch.get_num_threads(), "backend": "transformers"})

    def _require_model(self) -> Any:
        if self._model is None:
            raise BackendError("the transformers backend was closed")
        return self._model

    def close(self) -> None:
        """Drop the model's weights (a stream still running keeps them until it ends).
        Idempotent; ``count_tokens`` still works afterwards, generation raises BackendError."""
        self._model = None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def _accepts_logits_to_keep(model: Any) -> bool:
    """Whether the model's ``forward`` can compute logits for the last positions only."""
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _apply_grammar(logits: torch.Tensor, matcher: LLMatcher) -> None:
    """Set the logits of tokens the grammar forbids next to -inf, in place.

    Raises:
        BackendError: the matcher is in an error state (nothing would be allowed).
    """
    import torch

    allowed = torch.frombuffer(bytearray(matcher.compute_logit_bias()), dtype=torch.uint8)
    if matcher.is_error():
        raise BackendError(f"the JSON grammar failed: {_first_line(matcher.get_error())}")
    n = min(allowed.numel(), logits.numel())
    logits[:n].masked_fill_(allowed[:n] == 0, -math.inf)
    logits[n:] = -math.inf


def sample_token(logits: torch.Tensor, params: SamplingParams, history: Sequence[int],
                 generator: torch.Generator) -> int:
    """Pick the next token from ``logits`` (float32, shape ``[vocab]``; changed in place).

    The chain follows llama.cpp's: ``logit_bias`` added, then the penalties over the last
    ``repeat_last_n`` tokens of ``history`` (prompt and reply; the repeat penalty CTRL-style:
    positive logits divided by it, others multiplied; then ``count * frequency_penalty +
    presence_penalty`` subtracted, as llama.cpp's penalties sampler), then greedy when
    ``temperature`` is 0, else top-k, top-p, min-p (each on the untempered distribution),
    temperature, and a draw with ``generator``.

    Raises:
        InvalidParams: a ``logit_bias`` token outside the vocabulary.
    """
    import torch

    if params.logit_bias:
        ids = list(params.logit_bias)
        if max(ids) >= logits.numel():
            raise InvalidParams(f"logit_bias names token id(s) outside this model's vocabulary "
                                f"of {logits.numel()} tokens", param="logit_bias")
        logits[torch.tensor(ids, dtype=torch.long)] += torch.tensor(
            list(params.logit_bias.values()), dtype=logits.dtype)
    penalised = (params.repeat_penalty != 1.0 or params.presence_penalty
                 or params.frequency_penalty)
    if penalised and params.repeat_last_n > 0 and history:
        counts = Counter(history[-params.repeat_last_n:])
        recent = torch.tensor(list(counts), dtype=torch.long)
        seen = logits[recent]
        seen = torch.where(seen > 0, seen / params.repeat_penalty, seen * params.repeat_penalty)
        times = torch.tensor(list(counts.values()), dtype=logits.dtype)
        logits[recent] = seen - (times * params.frequency_penalty + params.presence_penalty)
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    if 0 < params.top_k < logits.numel():
        kth = torch.topk(logits, params.top_k).values[-1]
        logits[logits < kth] = -math.inf
    if params.top_p < 1.0:
        probs, order = torch.sort(torch.softmax(logits, dim=-1), descending=True)
        beyond = (torch.cumsum(probs, dim=-1) - probs) >= params.top_p  # the first always stays
        logits[order[beyond]] = -math.inf
    if params.min_p > 0.0:
        probs = torch.softmax(logits, dim=-1)
        logits[probs < params.min_p * probs.max()] = -math.inf
    probs = torch.softmax(logits / params.temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


class _Detokenizer:
    """Turns token ids into text pieces as they arrive, holding back incomplete characters.

    Decoding one token at a time loses what depends on its neighbours (a SentencePiece word's
    leading space, a UTF-8 character split over byte tokens), so each piece is the difference
    between decoding a short window with and without the new tokens (as Hugging Face's TGI
    does). Special tokens decode to nothing.

    Args:
        tokenizer: the Hugging Face tokenizer.
        context: the last few prompt tokens, decoded before the reply's first token.
    """

    def __init__(self, tokenizer: Any, context: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        self._ids = list(context)
        self._prefix = 0
        self._read = len(self._ids)

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True,
                                          clean_up_tokenization_spaces=False))

    def add(self, token: int) -> str:
        """Add one token; return the text it completes (may be empty)."""
        self._ids.append(token)
        return self._advance(final=False)

    def flush(self) -> str:
        """The text still held back at the end of the stream."""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before):]
