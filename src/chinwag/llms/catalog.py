"""What one server offers: the default LLM, the others ``--llm`` names, and every LLM a
persona names, each a ``ModelSpec`` with its id (``server_models``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from chinwag.llms.registry import ModelSpec

if TYPE_CHECKING:
    from chinwag.backends.base import BackendConfig, LanguageBackend
    from chinwag.settings import Settings


def llm_id(ref: str) -> str:
    """The id an LLM reference gets in the API: a configured name as it is (``smollm2``), a
    file by its stem (``./llms/pirate.yaml`` -> ``pirate``)."""
    path = Path(ref)
    return path.stem if path.suffix in {".yaml", ".yml"} or len(path.parts) > 1 else ref


def llm_configs(settings: Settings, refs: Iterable[str]
                ) -> dict[str, tuple[Path, BackendConfig]]:
    """The config file and config of each LLM reference (checked, not loaded).

    Raises:
        ConfigError: a reference that is neither a file nor a configured name, or a config
            that is not valid (at its file and line).
    """
    from chinwag.backends.config import find_llm_config, load_llm_config

    found: dict[str, tuple[Path, BackendConfig]] = {}
    for ref in refs:
        if ref not in found:
            path = find_llm_config(ref, settings)
            found[ref] = (path, load_llm_config(path))
    return found


def server_models(settings: Settings, default: LanguageBackend, persona_refs: Iterable[str]
                  ) -> tuple[list[ModelSpec], dict[str, str],
                             Callable[[ModelSpec], LanguageBackend]]:
    """The models a server offers, the default first, and how to load them.

    The default is ``settings.llm`` or, without one, the GGUF model the settings describe; its
    id is the model's own name, as a single-model server has always listed it
    (``gemma-3-270m-q4_k_m``, or what a remote server calls its model), and its LLM name
    (``default``) is an alias. Then ``settings.more_llms`` and the LLMs personas name
    (``llm:``), each by its LLM name (``smollm2``; a file by its stem), each checked now (a
    missing or broken config fails the start, at its file and line) but loaded on first use.

    Args:
        settings: the server's settings.
        default: the default model, loaded already.
        persona_refs: the ``llm`` of each persona that names one.

    Returns:
        the specs, the model id of each LLM reference (``""``: the default), and the loader.

    Raises:
        ConfigError: an LLM reference that is neither a file nor a configured name, or a
            config that is not valid.
    """
    from chinwag.backends import load_backend
    from chinwag.backends.config import open_llm

    first = default.info().name
    alias = llm_id(settings.llm) if settings.llm else first
    specs = [ModelSpec(first, settings.llm, description=str(default.info().extra.get(
        "description", first)), aliases=(alias,) if alias != first else ())]
    taken = {first, alias}
    ids = {"": first}
    if settings.llm:
        ids[settings.llm] = first
    refs = [ref for ref in dict.fromkeys([*settings.more_llms, *sorted(set(persona_refs))])
            if ref not in ids]
    for ref, (path, config) in llm_configs(settings, refs).items():
        model = llm_id(ref)
        if model in taken:
            model = ref
        taken.add(model)
        ids[ref] = model
        specs.append(ModelSpec(model, ref, description=config.description or ref,
                               estimate_bytes=config.memory_estimate(settings, path.parent)))

    def load(spec: ModelSpec) -> LanguageBackend:
        return open_llm(spec.ref, settings) if spec.ref else load_backend(settings)

    return specs, ids, load
