"""``chinwag serve``: run the chatbot service (HTTP, websocket, web page) with uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chinwag.backends.config import find_llm_config, load_llm_config
from chinwag.chat.persona import load_personas
from chinwag.cli.common import (
    ChatFormatOpt,
    ConfigOpt,
    DbOpt,
    LlmOpt,
    ModelOpt,
    NCtxOpt,
    PersonasOpt,
    ThreadsOpt,
    friendly_errors,
    open_backend,
    settings_from,
)
from chinwag.store import Store

console = Console(stderr=True, highlight=False, soft_wrap=True)


@friendly_errors
def serve(
    host: Annotated[str | None, typer.Option(
        "--host", help="Address to listen on (env: CHINWAG_HOST; default 127.0.0.1).",
        show_default=False)] = None,
    port: Annotated[int | None, typer.Option(
        "--port", help="Port (env: CHINWAG_PORT; default 8000).", show_default=False)] = None,
    model: ModelOpt = None, llm: LlmOpt = None, personas_dir: PersonasOpt = None,
    chat_format: ChatFormatOpt = None,
    n_ctx: NCtxOpt = None, threads: ThreadsOpt = None, config: ConfigOpt = None,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", help="Require this API key (comma-separate several; env: "
        "CHINWAG_API_KEY).", show_default=False)] = None,
    max_queue: Annotated[int | None, typer.Option(
        "--max-queue", help="Requests that may wait for the model before the server answers "
        "503 (env: CHINWAG_MAX_QUEUE; default 16).", show_default=False)] = None,
    parallel: Annotated[int | None, typer.Option(
        "--parallel", help="Requests generated at once, batched together (env: "
        "CHINWAG_PARALLEL; default 8).", show_default=False)] = None,
    db: DbOpt = None,
    kv_cache_ram: Annotated[str | None, typer.Option(
        "--kv-cache-ram", help="RAM for idle conversations' KV state, e.g. 512MiB, 2GB, 0 "
        "(env: CHINWAG_KV_CACHE_RAM; default 1GiB).", show_default=False)] = None,
    kv_cache_dir: Annotated[Path | None, typer.Option(
        "--kv-cache-dir", help="Also keep idle conversations' KV state in this folder, so "
        "returning users are fast after a restart (env: CHINWAG_KV_CACHE_DIR).",
        show_default=False)] = None,
) -> None:
    """Serve personas over HTTP: OpenAI-compatible API, persona endpoints, websocket, web page."""
    import uvicorn

    from chinwag.server import create_app

    settings = settings_from(config, host=host, port=port, model=model, llm=llm,
                             personas_dir=personas_dir, chat_format=chat_format, n_ctx=n_ctx,
                             n_threads=threads, api_key=api_key, max_queue=max_queue, db=db,
                             parallel=parallel, kv_cache_ram=kv_cache_ram,
                             kv_cache_dir=kv_cache_dir)
    loaded = load_personas(settings.user_personas_dir())  # fail early on a bad file
    personas = sorted(loaded)
    for name in personas:
        ref = loaded[name].llm
        if ref and ref != settings.llm:
            load_llm_config(find_llm_config(ref, settings))  # fail early on a bad one
            console.print(f"persona {name} runs on LLM {ref!r} (its llm:)")
    Store(settings.db_path()).close()  # and on a database that cannot be used
    backend = open_backend(settings)
    try:
        info = backend.info()
        console.print(f"[bold]chinwag[/] serving on [cyan]http://{settings.host}:{settings.port}"
                      f"[/]  (OpenAI API at /v1, web page at /)")
        console.print(f"model: {info.name} ({info.path or 'remote'}), n_ctx {info.n_ctx}, "
                      f"chat format {info.chat_format}, {backend.max_parallel} at once")
        console.print(f"personas: {', '.join(personas)}")
        console.print(f"conversations: {settings.db_path()}")
        if backend.cache_stats():
            console.print(f"KV cache: {settings.kv_cache_ram.human_readable()} RAM"
                          + (f", files in {settings.kv_cache_dir}" if settings.kv_cache_dir
                             else ""))
        if settings.api_keys():
            console.print("API key required (Authorization: Bearer KEY or X-Api-Key)")
        app = create_app(settings, backend, close_backend=True)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                    ws="websockets-sansio")
    finally:
        backend.close()
