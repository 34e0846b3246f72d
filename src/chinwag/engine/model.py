"""A GGUF model loaded by llama.cpp: weights, tokenizer and metadata (no context, no KV cache)."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import threading
from collections import deque
from pathlib import Path
from typing import Literal

import llama_cpp

from chinwag.errors import BackendError, ModelLoadError
from chinwag.models import check_gguf

_LOG_LINES: deque[str] = deque(maxlen=40)
_LOG_LOCK = threading.Lock()
_backend_ready = False


@llama_cpp.llama_log_callback
def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """Keep llama.cpp's log out of the terminal; remember its last lines for error messages."""
    _LOG_LINES.append(text.decode("utf-8", errors="replace"))


def _init_backend() -> None:
    global _backend_ready
    with _LOG_LOCK:
        if not _backend_ready:
            llama_cpp.llama_log_set(_quiet_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True


def recent_log(lines: int = 6) -> str:
    """The last lines llama.cpp logged, joined (for error messages)."""
    text = "".join(_LOG_LINES).strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


ALL_LAYERS = 0x7FFFFFFF
"""``llama_model_params.n_gpu_layers`` meaning every layer (llama.cpp offloads at most the
model's layers plus its output layer; llama-cpp-python passes the same for -1)."""


def gpu_layers(requested: int | Literal["auto"], supports_offload: bool) -> int:
    """The ``n_gpu_layers`` to give llama.cpp.

    Args:
        requested: "auto" (every layer when ``supports_offload``, else none), -1 (every
            layer) or a number of layers (given as is: a number wins).
        supports_offload: whether this llama.cpp build can offload to a GPU
            (``llama_cpp.llama_supports_gpu_offload()``).

    Returns:
        A layer count, ``ALL_LAYERS`` for all (>= 0).
    """
    if requested == "auto":
        return ALL_LAYERS if supports_offload else 0
    return ALL_LAYERS if requested < 0 else requested


class LlamaModel:
    """Weights and vocabulary of one GGUF model.

    Args:
        path: the GGUF file.
        n_gpu_layers: layers to offload to a GPU: "auto", -1 (all) or a number (see
            ``gpu_layers``); a build without GPU offload runs every layer on the CPU.

    Raises:
        ModelNotFound, ModelLoadError: the file is missing, is not a GGUF, or llama.cpp
            refuses it (the message quotes llama.cpp's log).
    """

    def __init__(self, path: Path, *, n_gpu_layers: int | Literal["auto"] = "auto") -> None:
        self.path = check_gguf(Path(path))
        _init_backend()
        self.supports_offload = bool(llama_cpp.llama_supports_gpu_offload())
        self.n_gpu_layers = gpu_layers(n_gpu_layers, self.supports_offload)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = self.n_gpu_layers
        self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params)
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not load {self.path}: {recent_log()}")
        self.vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self._pieces: dict[int, bytes] = {}
        self.bos_token_id: int = llama_cpp.llama_vocab_bos(self.vocab)
        self.eos_token_id: int = llama_cpp.llama_vocab_eos(self.vocab)
        self.add_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))

    @property
    def handle(self) -> llama_cpp.llama_model_p:
        """The ``llama_model *`` pointer, for ``Engine``."""
        if not self._model:
            raise BackendError("the model was closed")
        return self._model

    def tokenize(self, text: str, *, add_special: bool = True,
                 parse_special: bool = True) -> list[int]:
        """Token ids of ``text``.

        Args:
            add_special: add BOS if the model wants one (as llama.cpp does for a prompt), unless
                the text already starts with the BOS token's text.
            parse_special: read control-token text (``<start_of_turn>``) as control tokens, as
                chat templates need.
        """
        data = text.encode("utf-8")
        if add_special and self.add_bos and self.bos_text and text.startswith(self.bos_text):
            add_special = False
        capacity = len(data) + 8
        out = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), out, capacity,
                                     add_special, parse_special)
        if n < 0:
            capacity = -n
            out = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), out, capacity,
                                         add_special, parse_special)
        if n < 0:
            raise BackendError(f"tokenizing failed ({n})")
        return list(out[:n])

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (control tokens give b""), cached per token.

        Safe to call from several threads at once (each call that misses the cache has its own
        buffer; a shared one let one thread's bytes land in another's cache entry)."""
        cached = self._pieces.get(token)
        if cached is None:
            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
            cached = buf.raw[:n]
            self._pieces[token] = cached
        return cached

    def detokenize(self, tokens: list[int]) -> str:
        """The text of ``tokens`` (invalid UTF-8 replaced), control tokens left out."""
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, end-of-turn)."""
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def token_text(self, token: int) -> str:
        """The vocabulary's text of a token, control tokens included (``<bos>``)."""
        if token < 0:
            return ""
        raw = llama_cpp.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    @property
    def bos_text(self) -> str:
        return self.token_text(self.bos_token_id)

    @property
    def eos_text(self) -> str:
        return self.token_text(self.eos_token_id)

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as text (``general.architecture``...), or None if absent."""
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self.handle, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1

    @property
    def chat_template(self) -> str | None:
        """The model's own Jinja chat template (``tokenizer.chat_template``), if it has one."""
        return self.meta("tokenizer.chat_template") or None

    @property
    def n_params(self) -> int:
        return int(llama_cpp.llama_model_n_params(self.handle))

    @property
    def n_ctx_train(self) -> int:
        return int(llama_cpp.llama_model_n_ctx_train(self.handle))

    @property
    def size_bytes(self) -> int:
        """Bytes of the model's weights (``llama_model_size``)."""
        return int(llama_cpp.llama_model_size(self.handle))

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of KV cache one token of context takes: keys and values, f16, in every layer
        (llama.cpp's default cache type; sliding-window layers are counted in full, so this
        is an upper bound for Gemma 3)."""
        n_head = max(1, int(llama_cpp.llama_model_n_head(self.handle)))
        head_dim = int(self.meta(f"{self.meta('general.architecture')}.attention.key_length")
                       or int(llama_cpp.llama_model_n_embd(self.handle)) // n_head)
        n_head_kv = int(llama_cpp.llama_model_n_head_kv(self.handle))
        return 2 * 2 * self.n_layer * n_head_kv * head_dim

    @property
    def n_layer(self) -> int:
        """The model's repeating (transformer) layers."""
        return int(llama_cpp.llama_model_n_layer(self.handle))

    @property
    def device(self) -> str:
        """Where the layers run: "CPU", or "GPU (N of M layers)" when N are offloaded."""
        offloaded = min(self.n_gpu_layers, self.n_layer) if self.supports_offload else 0
        return f"GPU ({offloaded} of {self.n_layer} layers)" if offloaded else "CPU"

    @property
    def n_swa(self) -> int:
        """Sliding-window attention length, tokens (0: the model has none)."""
        return int(llama_cpp.llama_model_n_swa(self.handle))

    def fingerprint(self) -> str:
        """A name for these exact weights, for files that only they can read (saved KV
        state): the file's stem, then a hash of its size, first MiB and llama.cpp's
        description of the model."""
        digest = hashlib.sha256()
        digest.update(str(self.path.stat().st_size).encode())
        with open(self.path, "rb") as f:
            digest.update(f.read(1 << 20))
        digest.update(self.description.encode())
        return f"{self.path.stem}-{digest.hexdigest()[:16]}"

    @property
    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self.handle, buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Free the weights. Idempotent."""
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
