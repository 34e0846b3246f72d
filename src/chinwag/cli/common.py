"""What the CLI commands share: option definitions, settings, loading the model, errors."""

from __future__ import annotations

import functools
import getpass
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import httpx
import typer
from pydantic import ByteSize
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from chinwag.backends import LanguageBackend, load_backend
from chinwag.errors import ChinwagError
from chinwag.settings import Settings, load_settings
from chinwag.types import SamplingParams

err_console = Console(stderr=True, highlight=False)

# -- options: help text from the schemas, one definition each -----------------------------------


def _readable(value: Any) -> str:
    """A default as people write it: ``1GiB`` rather than 1073741824."""
    if isinstance(value, ByteSize):
        return value.human_readable().replace(".0", "")
    return str(value)


def setting_help(name: str) -> str:
    """The ``--help`` text of the setting ``name``: its description, environment variables
    and default, from the ``Settings`` schema (a None default is left to the description).

    Raises:
        KeyError: no such setting.
    """
    field = Settings.model_fields[name]
    details = [f"env: {', '.join(Settings.env_names(name))}"]
    if field.default_factory is None and field.default is not None:
        details.append(f"default: {_readable(field.default)}")
    return f"{field.description} ({'; '.join(details)})"


def setting_option(name: str, *flags: str) -> Any:
    """A typer option for the setting ``name`` (its help from ``setting_help``)."""
    return typer.Option(*flags, help=setting_help(name), show_default=False)


def sampling_option(name: str, *flags: str, default: Any = None) -> Any:
    """A typer option for the sampling parameter ``name``, its help the field's description
    and default from ``SamplingParams`` (or ``default``, for a command with its own).

    Raises:
        KeyError: no such sampling parameter.
    """
    spec = {f.name: f for f in fields(SamplingParams)}[name]
    shown = spec.default if default is None else default
    text = spec.metadata["description"]
    return typer.Option(*flags, help=text if shown is None else f"{text} (default: {shown})",
                        show_default=False)


ModelOpt = Annotated[str | None, setting_option("model", "--model", "-m")]
LlmOpt = Annotated[str | None, setting_option("llm", "--llm")]
ChatFormatOpt = Annotated[str | None, setting_option("chat_format", "--chat-format")]
NCtxOpt = Annotated[int | None, setting_option("n_ctx", "--n-ctx", "-c")]
NBatchOpt = Annotated[int | None, setting_option("n_batch", "--n-batch")]
ThreadsOpt = Annotated[int | None, setting_option("n_threads", "--threads", "-t")]
ConfigOpt = Annotated[Path | None, setting_option("config", "--config")]
PersonasOpt = Annotated[Path | None, setting_option("personas_dir", "--personas")]
SourcesOpt = Annotated[Path | None, setting_option("sources_dir", "--sources")]
FetchAllowOpt = Annotated[str | None, setting_option("fetch_allow_private",
                                                     "--fetch-allow-private")]
DbOpt = Annotated[Path | None, setting_option("db", "--db")]

MaxTokensOpt = Annotated[int | None, sampling_option("max_tokens", "--max-tokens", "-n")]
TemperatureOpt = Annotated[float | None, sampling_option("temperature", "--temperature")]
TopKOpt = Annotated[int | None, sampling_option("top_k", "--top-k")]
TopPOpt = Annotated[float | None, sampling_option("top_p", "--top-p")]
MinPOpt = Annotated[float | None, sampling_option("min_p", "--min-p")]
RepeatPenaltyOpt = Annotated[float | None, sampling_option("repeat_penalty", "--repeat-penalty")]
SeedOpt = Annotated[int | None, sampling_option("seed", "--seed")]


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


UrlOpt = Annotated[str | None, typer.Option(
    "--url", help="The server (default: http://HOST:PORT of the settings).", show_default=False)]


def call_server(method: str, path: str, *, url: str | None, api_key: str | None,
                config: Path | None, body: Any = None) -> tuple[str, Any]:
    """Ask a running chinwag server (``url``, else the settings' host and port, with the
    settings' API key) and return its base URL and JSON answer.

    Raises:
        typer.Exit: no server answers, or it answers an error (its message is printed).
    """
    settings = settings_from(config, api_key=api_key)
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    keys = settings.api_keys()
    headers = {"Authorization": f"Bearer {keys[0]}"} if keys else {}
    try:
        reply = httpx.request(method, f"{base}{path}", headers=headers, json=body,
                              timeout=600, trust_env=False)
    except httpx.HTTPError:
        err_console.print(f"[bold red]error:[/] no server at {escape(base)}", markup=True)
        raise typer.Exit(1) from None
    try:
        answer = reply.json()
    except ValueError:
        answer = None
    if reply.status_code != 200:
        message = answer.get("error", {}).get("message") if isinstance(answer, dict) else None
        said = message or f"{base} answered {reply.status_code}"
        err_console.print(f"[bold red]error:[/] {escape(said)}", markup=True, soft_wrap=True)
        raise typer.Exit(1)
    return base, answer


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
