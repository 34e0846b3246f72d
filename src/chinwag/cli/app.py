"""The ``chinwag`` command: chat, complete, models, llms, personas, serve, ps, conversations,
sources, knowledge, batch, hooks."""

from __future__ import annotations

import typer

from chinwag.cli import (
    batch,
    chat,
    complete,
    conversations,
    hooks,
    info,
    knowledge,
    ps,
    serve,
    sources,
)

app = typer.Typer(name="chinwag", no_args_is_help=True, add_completion=False,
                  help="Chat with LLM personas on a local model.")
app.command("chat")(chat.chat)
app.command("complete")(complete.complete)
app.command("models")(info.models)
app.command("personas")(info.personas)
app.command("llms")(info.llms)
app.command("serve")(serve.serve)
app.command("ps")(ps.ps)
app.add_typer(conversations.app, name="conversations")
app.add_typer(sources.app, name="sources")
app.add_typer(knowledge.app, name="knowledge")
app.add_typer(batch.app, name="batch")
app.add_typer(hooks.app, name="hooks")


def main() -> None:
    """Entry point of the ``chinwag`` script."""
    app()
