"""What the CLI commands share: option definitions, settings, loading the model, errors."""

from __future__ import annotations

import functools
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from chinwag.backends import LanguageBackend, load_backend
from chinwag.errors import ChinwagError
from chinwag.prompting import format_names
from chinwag.settings import Settings, load_settings

err_console = Console(stderr=True, highlight=False)

# -- options shared by several commands (one definition each) -----------------------------------
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="GGUF file to load (env: CHINWAG_MODEL, LLM_MODEL_FILE). "
    "Default: the embedded Gemma 3 270M base model.", show_default=False)]
LlmOpt = Annotated[str | None, typer.Option(
    "--llm", help="LLM config: a YAML file, or the name of a configured LLM (see chinwag llms; "
    "env: CHINWAG_LLM). Default: the GGUF model (--model, else the embedded one).",
    show_default=False)]
ChatFormatOpt = Annotated[str | None, typer.Option(
    "--chat-format", help=f"Force a named chat format ({', '.join(format_names())}, "
    "transcript).", show_default=False)]
NCtxOpt = Annotated[int | None, typer.Option(
    "--n-ctx", "-c", help="Context window in tokens (env: CHINWAG_N_CTX, LLM_CONTEXT_WINDOW; "
    "default 4096).", show_default=False)]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", "-t", help="CPU threads (env: LLM_CPU_THREADS; default: all cores).",
    show_default=False)]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="YAML file of settings (env: CHINWAG_CONFIG).", show_default=False)]
PersonasOpt = Annotated[Path | None, typer.Option(
    "--personas", help="Folder of persona YAML files (env: CHINWAG_PERSONAS; default "
    "~/.config/chinwag/personas).", show_default=False)]

DbOpt = Annotated[Path | None, typer.Option(
    "--db", help="Conversation database file (env: CHINWAG_DB; default "
    "~/.local/share/chinwag/chinwag.db).", show_default=False)]
MaxTokensOpt = Annotated[int | None, typer.Option("--max-tokens", "-n",
                                                  help="Most tokens to generate.")]
TemperatureOpt = Annotated[float | None, typer.Option("--temperature", help="0 = greedy.")]
TopKOpt = Annotated[int | None, typer.Option("--top-k", help="0 = off.")]
TopPOpt = Annotated[float | None, typer.Option("--top-p")]
MinPOpt = Annotated[float | None, typer.Option("--min-p")]
RepeatPenaltyOpt = Annotated[float | None, typer.Option("--repeat-penalty", help="1 = off.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Same seed, same text.")]


def login_name() -> str:
    """Who is at the terminal, for the conversation database: the login name, else "local"."""
    try:
        return getpass.getuser() or "local"
    except (OSError, KeyError):
        return "local"


def sampling_flags(**flags: Any) -> dict[str, Any]:
    """The sampling flags the user actually gave (None means not given)."""
    return {k: v for k, v in flags.items() if v is not None}


def settings_from(config: Path | None = None, **flags: Any) -> Settings:
    """Settings from flags (None = not given), environment and config file."""
    return load_settings(flags, config)


def open_backend(settings: Settings) -> LanguageBackend:
    """Load the model the settings name, showing a progress bar while the embedded model is
    assembled for the first time (on stderr, so piped output stays clean)."""
    progress: Progress | None = None
    task: Any = None

    def report(done: int, total: int) -> None:
        nonlocal progress, task
        if progress is None:
            progress = Progress(TextColumn("Preparing the embedded model"), BarColumn(),
                                DownloadColumn(), TransferSpeedColumn(), console=err_console,
                                transient=True)
            progress.start()
            task = progress.add_task("assemble", total=total)
        progress.update(task, completed=done)

    try:
        return load_backend(settings, report)
    finally:
        if progress is not None:
            progress.stop()
            err_console.print("[green]Embedded model ready[/] (checksum verified).")


P = ParamSpec("P")
R = TypeVar("R")


def friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn chinwag's errors into one red line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ChinwagError as e:
            err_console.print(f"[bold red]error:[/] {e}", markup=True, soft_wrap=True)
            raise typer.Exit(1) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper
