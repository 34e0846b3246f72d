"""``chinwag ps``: the models a running server has loaded, as ``ollama ps`` shows them
(``GET /models``); ``--all`` lists the unloaded ones too, ``--json`` prints the answer."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from chinwag.cli.common import ConfigOpt, UrlOpt, call_server, friendly_errors, setting_option

console = Console(highlight=False)


def _size(n: int | None) -> str:
    if not n:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return ""
    seconds = max(0, round(now - when))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def _until(model: dict[str, Any], now: float) -> str:
    if model["status"] != "loaded":
        return ""
    if model["requests"]:
        return "busy"
    expires = model.get("expires_at")
    if expires is None:
        return "forever"
    seconds = max(0, round(expires - now))
    return f"in {seconds} s" if seconds < 120 else f"in {seconds // 60} min"


@friendly_errors
def ps(url: UrlOpt = None,
       api_key: Annotated[str | None, setting_option("api_key", "--api-key")] = None,
       show_all: Annotated[bool, typer.Option(
           "--all", "-a", help="List the models not loaded too.")] = False,
       as_json: Annotated[bool, typer.Option("--json", help="Print the server's answer.")] = False,
       config: ConfigOpt = None) -> None:
    """List the models a running server has loaded: memory, device, requests running, idle
    since, and when they will be unloaded."""
    base, body = call_server("GET", "/models", url=url, api_key=api_key, config=config)
    if as_json:
        print(json.dumps(body, indent=2))
        return
    now = time.time()
    models = [m for m in body.get("data", []) if show_all or m["status"] in ("loaded", "loading")]
    table = Table("NAME", "STATUS", "SIZE", "DEVICE", "REQUESTS", "IDLE SINCE", "UNTIL",
                  box=None, header_style="bold")
    table.columns[0].no_wrap = True
    for m in models:
        name = m["id"] + (" *" if m["id"] == body.get("default") else "")
        table.add_row(name, m["status"] if not m.get("error") else f"failed: {m['error']}",
                      _size(m.get("size_bytes")), m.get("device") or "",
                      str(m.get("requests", 0)), _ago(m.get("idle_since"), now),
                      _until(m, now))
    if not models:
        console.print(f"No model is loaded on {base}.")
        return
    console.print(table)
    limit = body.get("models_memory")
    console.print(f"[dim]{base}: * the default model; at most {body.get('models_max')} "
                  "loaded at once"
                  + (f", {_size(limit)} of memory" if limit else "") + "[/]")
