"""``chinwag conversations``: list, export, import and delete stored conversations.

``chinwag conversations`` alone lists them (newest first); the subcommands ``export``,
``import`` and ``delete`` move a conversation in and out of the database or make chinwag forget
it, or every conversation of a user.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chinwag.cli.common import ConfigOpt, DbOpt, friendly_errors, settings_from
from chinwag.errors import StoreError
from chinwag.store import Store

console = Console(highlight=False)
app = typer.Typer(name="conversations", add_completion=False, no_args_is_help=False,
                  help="List, export, import and delete stored conversations.")

UserOpt = Annotated[str | None, typer.Option("--user", help="Only this user's conversations.",
                                             show_default=False)]
PersonaOpt = Annotated[str | None, typer.Option(
    "--persona", "-p", help="Only conversations with this persona.", show_default=False)]


def _open(db: Path | None, config: Path | None) -> Store:
    return Store(settings_from(config, db=db).db_path())


@app.callback(invoke_without_command=True)
@friendly_errors
def conversations(ctx: typer.Context, user: UserOpt = None, persona: PersonaOpt = None,
                  db: DbOpt = None, config: ConfigOpt = None) -> None:
    """List stored conversations, the most recently active first."""
    if ctx.invoked_subcommand is not None:
        return
    with _open(db, config) as store:
        found = store.list_conversations(user=user, persona=persona)
        table = Table("id", "persona", "user", "messages", "last active", "summary",
                      title=f"Conversations in {store.path}")
        for c in found:
            when = datetime.fromtimestamp(c.updated_at).strftime("%Y-%m-%d %H:%M")
            table.add_row(c.id, c.persona, c.user or "-", str(c.message_count), when,
                          "yes" if c.summary else "")
    console.print(table if found else f"No conversations in {store.path}.")


@app.command("export")
@friendly_errors
def export(conversation: Annotated[str, typer.Argument(help="The conversation's id.")],
           file: Annotated[Path | None, typer.Argument(
               help="Where to write the JSON (default: standard output).")] = None,
           db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Write one conversation as JSON (messages, summary, timestamps)."""
    with _open(db, config) as store:
        text = json.dumps(store.export_conversation(conversation), indent=2,
                          ensure_ascii=False) + "\n"
    if file is None:
        typer.echo(text, nl=False)
        return
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as e:
        raise StoreError(f"cannot write {file}: {e.strerror}") from None
    console.print(f"Saved conversation {conversation} to {file}.")


@app.command("import")
@friendly_errors
def import_(file: Annotated[Path, typer.Argument(help="A JSON file from export.")],
            db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Add a conversation exported earlier (under a new id if its id is taken)."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as e:
        raise StoreError(f"cannot read {file}: {e.strerror}") from None
    except ValueError as e:
        raise StoreError(f"{file} is not JSON: {e}") from None
    with _open(db, config) as store:
        added = store.import_conversation(data)
    console.print(f"Imported {added.message_count} messages as conversation {added.id}.")


@app.command("delete")
@friendly_errors
def delete(conversation: Annotated[str | None, typer.Argument(
               help="The conversation's id (or use --user to delete all of a user's).")] = None,
           user: UserOpt = None, persona: PersonaOpt = None,
           db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Delete one conversation, or every conversation of ``--user`` (with ``--persona``)."""
    if (conversation is None) == (user is None):
        raise typer.BadParameter("give a conversation id or --user, not both")
    with _open(db, config) as store:
        if conversation is not None:
            store.delete_conversation(conversation)
            console.print(f"Deleted conversation {conversation}.")
        else:
            assert user is not None
            n = store.delete_user_conversations(user, persona)
            console.print(f"Deleted {n} conversation(s) of {user}.")
