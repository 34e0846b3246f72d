"""Several LLMs in one process: the registry that loads them on demand (``registry.py``),
the handle that stands for one of them as a ``LanguageBackend`` (``handle.py``), and the
catalogue of what a server offers (``catalog.py``). The built-in LLM configs (YAML) live in
this folder too."""

from chinwag.llms.catalog import llm_id, server_models
from chinwag.llms.handle import ModelHandle
from chinwag.llms.registry import (
    FOREVER,
    Lease,
    ModelEvents,
    ModelRegistry,
    ModelSpec,
    ModelState,
    ModelStatus,
    parse_keep_alive,
)

__all__ = ["FOREVER", "Lease", "ModelEvents", "ModelHandle", "ModelRegistry", "ModelSpec",
           "ModelState", "ModelStatus", "llm_id", "parse_keep_alive", "server_models"]
