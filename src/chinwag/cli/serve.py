"""``chinwag serve``: run the chatbot service (HTTP, websocket, web page) with uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from chinwag.chat.persona import load_personas
from chinwag.cli.common import (
    ChatFormatOpt,
    ConfigOpt,
    DbOpt,
    FetchAllowOpt,
    ModelOpt,
    NBatchOpt,
    NCtxOpt,
    PersonasOpt,
    SourcesOpt,
    ThreadsOpt,
    friendly_errors,
    open_backend,
    setting_option,
    settings_from,
)
from chinwag.llms.catalog import llm_configs, llm_id
from chinwag.store import Store

if TYPE_CHECKING:
    from chinwag.backends.base import LanguageBackend
    from chinwag.settings import Settings

console = Console(stderr=True, highlight=False, soft_wrap=True)


@friendly_errors
def serve(
    host: Annotated[str | None, setting_option("host", "--host")] = None,
    port: Annotated[int | None, setting_option("port", "--port")] = None,
    model: ModelOpt = None,
    llm: Annotated[list[str] | None, typer.Option(
        "--llm", show_default=False,
        help="An LLM to serve: a YAML file or a configured name (`chinwag llms`). Give it "
        "several times to serve several: the first is the default, the others load on first "
        "use and clients pick them by id in `model` (env: CHINWAG_LLM for the default, "
        "CHINWAG_MORE_LLMS for the others).")] = None,
    models_max: Annotated[int | None, setting_option("models_max", "--models-max")] = None,
    models_memory: Annotated[str | None, setting_option(
        "models_memory", "--models-memory")] = None,
    models_idle: Annotated[float | None, setting_option("models_idle", "--models-idle")] = None,
    personas_dir: PersonasOpt = None,
    sources_dir: SourcesOpt = None, chat_format: ChatFormatOpt = None,
    n_ctx: NCtxOpt = None, n_batch: NBatchOpt = None, threads: ThreadsOpt = None,
    config: ConfigOpt = None,
    api_key: Annotated[str | None, setting_option("api_key", "--api-key")] = None,
    max_queue: Annotated[int | None, setting_option("max_queue", "--max-queue")] = None,
    max_body_bytes: Annotated[int | None, setting_option(
        "max_body_bytes", "--max-body-bytes")] = None,
    parallel: Annotated[int | None, setting_option("parallel", "--parallel")] = None,
    batch_places: Annotated[int | None, setting_option("batch_places", "--batch-places")] = None,
    prefill_chunk: Annotated[int | None, setting_option(
        "prefill_chunk", "--prefill-chunk")] = None,
    db: DbOpt = None,
    kv_cache_ram: Annotated[str | None, setting_option("kv_cache_ram", "--kv-cache-ram")] = None,
    kv_cache_dir: Annotated[Path | None, setting_option("kv_cache_dir", "--kv-cache-dir")] = None,
    kv_cache_disk: Annotated[str | None, setting_option(
        "kv_cache_disk", "--kv-cache-disk")] = None,
    fetch_allow_private: FetchAllowOpt = None,
) -> None:
    """Serve personas over HTTP: OpenAI-compatible API, persona endpoints, websocket, web page."""
    import uvicorn

    from chinwag.server import create_app

    settings = settings_from(config, host=host, port=port, model=model,
                             llm=llm[0] if llm else None, more_llms=llm[1:] if llm else None,
                             models_max=models_max, models_memory=models_memory,
                             models_idle=models_idle,
                             personas_dir=personas_dir, sources_dir=sources_dir,
                             chat_format=chat_format, n_ctx=n_ctx,
                             n_batch=n_batch, n_threads=threads, api_key=api_key,
                             max_queue=max_queue, max_body_bytes=max_body_bytes, db=db,
                             parallel=parallel, batch_places=batch_places,
                             prefill_chunk=prefill_chunk,
                             kv_cache_ram=kv_cache_ram, kv_cache_dir=kv_cache_dir,
                             kv_cache_disk=kv_cache_disk,
                             fetch_allow_private=fetch_allow_private)
    personas = _check_files(settings)
    backend = open_backend(settings)
    try:
        _announce(settings, backend, personas)
        app = create_app(settings, backend, close_backend=True)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                    ws="websockets-sansio")
    finally:
        backend.close()


def _check_files(settings: Settings) -> list[str]:
    """Fail early, before the model loads, on a bad persona file, a bad LLM config a persona
    names, or a database that cannot be used; returns the personas' names, sorted.

    Raises:
        PersonaError, ConfigError, StoreError: as their loaders.
    """
    loaded = load_personas(settings.user_personas_dir())
    personas = sorted(loaded)
    llm_configs(settings, [*settings.more_llms, *(p.llm for p in loaded.values() if p.llm)])
    for name in personas:
        ref = loaded[name].llm
        if ref and ref != settings.llm:
            console.print(f"persona {name} runs on LLM {ref!r} (its llm:)")
    Store(settings.db_path()).close()
    return personas


def _announce(settings: Settings, backend: LanguageBackend, personas: list[str]) -> None:
    """Say where the server listens and what it serves."""
    info = backend.info()
    console.print(f"[bold]chinwag[/] serving on [cyan]http://{settings.host}:{settings.port}"
                  f"[/]  (OpenAI API at /v1, web page at /)")
    device = info.extra.get("device")
    console.print(f"model: {info.name} ({info.path or 'remote'}), n_ctx {info.n_ctx}, "
                  f"chat format {info.chat_format}, {backend.max_parallel} at once"
                  + (f", on {device}" if device else ""))
    if settings.more_llms:
        console.print(f"more models: {', '.join(llm_id(ref) for ref in settings.more_llms)} "
                      f"(loaded on first use; at most {settings.models_max} at once)")
    console.print(f"personas: {', '.join(personas)}")
    console.print(f"conversations: {settings.db_path()}")
    if backend.cache_stats():
        console.print(f"KV cache: {settings.kv_cache_ram.human_readable()} RAM"
                      + (f", files in {settings.kv_cache_dir}" if settings.kv_cache_dir
                         else ""))
    if settings.api_keys():
        console.print("API key required (Authorization: Bearer KEY or X-Api-Key)")
