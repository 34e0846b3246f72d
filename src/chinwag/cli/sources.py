"""``chinwag sources``: the knowledge sources of the sources folder.

- ``list``: every source (a broken file is shown, and the exit status is 1);
- ``show NAME``: the source's file;
- ``test NAME``: fetch a page or feed source now and show what a prompt would get;
- ``reload``: make a running server read the sources folder again (``POST /sources/reload``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chinwag.cli.common import (
    ConfigOpt,
    UrlOpt,
    call_server,
    err_console,
    friendly_errors,
    setting_option,
    settings_from,
)
from chinwag.errors import FetchError, SourceError, UnknownSource
from chinwag.knowledge.extract import extract
from chinwag.knowledge.fetch import FetchPolicy, fetch
from chinwag.knowledge.sources import Source, load_source_file, source_paths

console = Console(highlight=False)
app = typer.Typer(name="sources", add_completion=False, no_args_is_help=True,
                  help="List, show and test knowledge sources; reload a server's.")

SourcesOpt = Annotated[Path | None, setting_option("sources_dir", "--sources")]
NameArg = Annotated[str, typer.Argument(help="The source's name.", show_default=False)]
PREVIEW_LINES = 15


def _folder(sources: Path | None, config: Path | None) -> Path:
    return settings_from(config, sources_dir=sources).user_sources_dir()


def _find(name: str, folder: Path) -> tuple[Source, Path]:
    """The source ``name`` of ``folder`` and its file (other files that are broken do not
    stand in the way).

    Raises:
        SourceError: the file of that name (else the first broken one) cannot be loaded,
            when no good file defines ``name``.
        UnknownSource: no file defines it.
    """
    known: list[str] = []
    broken: list[tuple[Path, SourceError]] = []
    for path in source_paths(folder):
        try:
            source = load_source_file(path)
        except SourceError as e:
            broken.append((path, e))
            continue
        if source.name == name:
            return source, path
        known.append(source.name)
    if broken:
        raise min(broken, key=lambda b: b[0].stem != name)[1]
    raise UnknownSource(name, sorted(known))


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


@app.command("list")
@friendly_errors
def list_(sources: SourcesOpt = None, config: ConfigOpt = None) -> None:
    """List the sources: name, kind, URL or collection, triggers, refresh time."""
    folder = _folder(sources, config)
    table = Table("name", "kind", "url / collection", "triggers", "refresh",
                  title=f"Sources in {folder}")
    broken: list[SourceError] = []
    for path in source_paths(folder):
        try:
            s = load_source_file(path)
        except SourceError as e:
            broken.append(e)
            continue
        table.add_row(s.name, s.kind, s.url or s.collection or "", ", ".join(s.triggers)
                      or "(always)", _seconds(s.refresh))
    if table.row_count:
        console.print(table)
    elif not broken:
        console.print(f"No sources in {folder}.")
    for problem in broken:
        err_console.print(f"[bold red]error:[/] {escape(str(problem))}", markup=True,
                          soft_wrap=True)
    if broken:
        raise typer.Exit(1)


@app.command("show")
@friendly_errors
def show(name: NameArg, sources: SourcesOpt = None, config: ConfigOpt = None) -> None:
    """Print the source's YAML file."""
    _, path = _find(name, _folder(sources, config))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SourceError(f"cannot read source file: {e.strerror}", path=str(path)) from None
    typer.echo(f"# {path}\n{text}", nl=not text.endswith("\n"))


@app.command("test")
@friendly_errors
def test(name: NameArg, sources: SourcesOpt = None, config: ConfigOpt = None) -> None:
    """Fetch a page or feed source now and show its title, URL, size and first lines."""
    settings = settings_from(config, sources_dir=sources)
    source, _ = _find(name, settings.user_sources_dir())
    if source.kind == "collection":
        console.print(f"{name} is the fact collection {source.collection!r}: collections are "
                      "searched, not fetched; try `chinwag knowledge search`.")
        return
    assert source.url is not None  # a page or feed has one (Source checks)
    try:
        document = extract(fetch(source.url, FetchPolicy.from_settings(settings)),
                           max_items=source.max_items)
    except FetchError as e:
        err_console.print(f"[bold red]fetch failed ({e.code}):[/] {escape(str(e))}", markup=True,
                          soft_wrap=True)
        raise typer.Exit(1) from None
    lines = document.text.splitlines()
    rows = [("title", document.title or "(none)"), ("url", document.url),
            ("kind", document.kind), ("words", str(len(document.text.split())))]
    for key, value in rows:
        console.print(f"[bold]{key}:[/] {escape(value)}", soft_wrap=True)
    console.print()
    console.print("\n".join(lines[:PREVIEW_LINES]), markup=False, soft_wrap=True)
    if len(lines) > PREVIEW_LINES:
        console.print(f"[dim]... {len(lines) - PREVIEW_LINES} more lines[/]")


@app.command("reload")
@friendly_errors
def reload(url: UrlOpt = None,
           api_key: Annotated[str | None, setting_option("api_key", "--api-key")] = None,
           config: ConfigOpt = None) -> None:
    """Make a running server read its sources folder again."""
    base, body = call_server("POST", "/sources/reload", url=url, api_key=api_key,
                             config=config)
    count = len(body.get("data", [])) if isinstance(body, dict) else 0
    console.print(f"Reloaded: the server at {base} has {count} source(s).")
