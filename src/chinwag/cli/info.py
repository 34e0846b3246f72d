"""``chinwag models``, ``chinwag llms`` and ``chinwag personas``: what is there to chat with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chinwag.backends.config import builtin_llms_dir, llm_config_files, llm_dirs, load_llm_config
from chinwag.chat.persona import builtin_personas_dir, persona_files
from chinwag.cli.common import (
    ChatFormatOpt,
    ConfigOpt,
    LlmOpt,
    ModelOpt,
    NBatchOpt,
    NCtxOpt,
    PersonasOpt,
    ThreadsOpt,
    friendly_errors,
    open_backend,
    setting_option,
    settings_from,
)
from chinwag.errors import ConfigError

console = Console(highlight=False)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(n)


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


@friendly_errors
def models(model: ModelOpt = None, llm: LlmOpt = None, n_ctx: NCtxOpt = None,
           n_batch: NBatchOpt = None, threads: ThreadsOpt = None,
           chat_format: ChatFormatOpt = None, config: ConfigOpt = None) -> None:
    """Show the model in use: file, size, parameters, n_ctx, chat format, device."""
    settings = settings_from(config, model=model, llm=llm, n_ctx=n_ctx, n_batch=n_batch,
                             n_threads=threads, chat_format=chat_format, parallel=1)
    backend = open_backend(settings)
    info = backend.info()
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    ctx = f"{info.n_ctx}" + (f" (trained: {info.n_ctx_train})" if info.n_ctx_train else "")
    rows = [("model", info.name), ("file", info.path or "-"), ("size", _size(info.size_bytes)),
            ("parameters", _count(info.parameters)), ("n_ctx", ctx),
            ("chat format", info.chat_format)]
    rows += [(k, str(v)) for k, v in info.extra.items()]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    backend.close()


@friendly_errors
def personas(personas_dir: PersonasOpt = None, config: ConfigOpt = None) -> None:
    """List the personas: built-in ones and your own (which override built-ins by name)."""
    settings = settings_from(config, personas_dir=personas_dir)
    user_dir = settings.user_personas_dir()
    builtin = builtin_personas_dir()
    table = Table("name", "character", "description")
    table.add_column("source", overflow="fold")
    for name, (persona, path) in sorted(persona_files(user_dir).items()):
        source = "built-in" if path.parent == builtin else str(path)
        table.add_row(name, persona.display_name, persona.description, source)
    console.print(table)
    console.print(f"[dim]user personas: {user_dir}[/]")


@friendly_errors
def llms(llms_dir: Annotated[Path | None, setting_option("llms_dir", "--dir")] = None,
         config: ConfigOpt = None) -> None:
    """List the configured LLMs (one YAML file each): built-in ones and your own. A file that
    does not validate is listed with its error."""
    settings = settings_from(config, llms_dir=llms_dir)
    builtin = builtin_llms_dir()
    table = Table("name", "backend", "model", "context", "description")
    table.add_column("source", overflow="fold")
    bad = 0
    for name, path in sorted(llm_config_files(settings).items()):
        source = "built-in" if path.parent == builtin else str(path)
        try:
            llm = load_llm_config(path)
        except ConfigError as e:
            bad += 1
            table.add_row(name, "[red]invalid[/]", "", "", f"[red]{e}[/]", source)
            continue
        where = getattr(llm, "base_url", None) or getattr(llm, "host", None)
        model = llm.model_id or getattr(llm, "model", None) or (
            "embedded Gemma 3 270M" if llm.backend == "llamacpp" else "")
        if package := getattr(llm, "package", None):
            model += f" (in {package})"
        table.add_row(name, llm.backend, escape(model + (f" @ {where}" if where else "")),
                      str(llm.context_length or "default"), escape(llm.description), source)
    console.print(table)
    console.print(f"[dim]user LLM configs: {llm_dirs(settings)[0]}; use one with "
                  f"--llm NAME or --llm FILE[/]")
    if bad:
        raise typer.Exit(1)
