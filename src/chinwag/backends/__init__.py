"""Language backends: one interface (``LanguageBackend``), several ways to run a model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chinwag.backends.base import Capabilities, LanguageBackend, ModelInfo
from chinwag.backends.scripted import ScriptedBackend
from chinwag.models import Progress, resolve_model

if TYPE_CHECKING:
    from chinwag.settings import Settings

__all__ = ["Capabilities", "LanguageBackend", "ModelInfo", "ScriptedBackend", "load_backend"]


def load_backend(settings: Settings, progress: Progress | None = None) -> LanguageBackend:
    """The backend the settings describe: the LLM config ``settings.llm`` names (any backend,
    see ``chinwag.backends.config``), else llama.cpp on the GGUF file the model settings give.

    Args:
        settings: chinwag's settings (an LLM config, or model path or repo, n_ctx, threads,
            chat format).
        progress: called as ``progress(done, total)`` bytes while the embedded model is first
            assembled.

    Raises:
        ModelNotFound, ModelLoadError, ConfigError, BackendError: see ``LlamaCppBackend`` and
            ``open_llm``.
    """
    if settings.llm:
        from chinwag.backends.config import open_llm

        return open_llm(settings.llm, settings, progress)
    from chinwag.backends.llamacpp import LlamaCppBackend

    path = resolve_model(settings, progress)
    return LlamaCppBackend(path, n_ctx=settings.n_ctx, n_batch=settings.n_batch,
                           n_threads=settings.n_threads, n_gpu_layers=settings.n_gpu_layers,
                           chat_format=settings.chat_format, n_parallel=settings.parallel,
                           prefill_chunk=settings.prefill_chunk,
                           kv_cache_ram=int(settings.kv_cache_ram),
                           kv_cache_dir=settings.kv_cache_dir,
                           kv_cache_disk=int(settings.kv_cache_disk))
