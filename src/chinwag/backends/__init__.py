"""Language backends: one interface (``LanguageBackend``), several ways to run a model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chinwag.backends.base import Capabilities, LanguageBackend, ModelInfo
from chinwag.backends.scripted import ScriptedBackend

if TYPE_CHECKING:
    from chinwag.models import Progress
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
        ModelNotFound, ModelLoadError, ConfigError, BackendError: see ``LlamaCppLLM.build``
            and ``open_llm``.
    """
    if settings.llm:
        from chinwag.backends.config import open_llm

        return open_llm(settings.llm, settings, progress)
    from chinwag.backends.llamacpp import LlamaCppLLM

    return LlamaCppLLM.model_validate({"backend": "llamacpp"}).build(settings, progress=progress)
