"""``chinwag chat``: talk to a persona in the terminal.

Interactive when stdin is a terminal (``repl.py``); otherwise one message per input line and
one answer per message, so ``printf 'Hello!\\n' | chinwag chat --persona villager`` works.
"""

from __future__ import annotations

import sys
from typing import Annotated, TextIO

import typer

from chinwag.chat import Chatbot, get_persona
from chinwag.cli.common import (
    ChatFormatOpt,
    ConfigOpt,
    DbOpt,
    FetchAllowOpt,
    LlmOpt,
    MaxTokensOpt,
    MinPOpt,
    ModelOpt,
    NBatchOpt,
    NCtxOpt,
    PersonasOpt,
    RepeatPenaltyOpt,
    SeedOpt,
    SourcesOpt,
    TemperatureOpt,
    ThreadsOpt,
    TopKOpt,
    TopPOpt,
    friendly_errors,
    login_name,
    open_backend,
    sampling_flags,
    setting_option,
    settings_from,
)
from chinwag.cli.session import ChatSession
from chinwag.errors import ChinwagError
from chinwag.knowledge.service import Knowledge
from chinwag.store import Store


@friendly_errors
def chat(
    persona: Annotated[str | None, setting_option("persona", "--persona", "-p")] = None,
    model: ModelOpt = None, llm: LlmOpt = None, chat_format: ChatFormatOpt = None,
    n_ctx: NCtxOpt = None, n_batch: NBatchOpt = None,
    threads: ThreadsOpt = None, personas_dir: PersonasOpt = None, sources_dir: SourcesOpt = None,
    fetch_allow_private: FetchAllowOpt = None, config: ConfigOpt = None,
    user: Annotated[str | None, typer.Option(
        "--user", help="Your name: in the conversation (default: the persona's user_name) and "
        "in the database, whose conversations are yours (default: your login name).",
        show_default=False)] = None,
    new: Annotated[bool, typer.Option(
        "--new", help="Start a new conversation instead of resuming the last one.")] = False,
    conversation: Annotated[str | None, typer.Option(
        "--conversation", help="Continue the conversation with this id "
        "(see chinwag conversations).", show_default=False)] = None,
    db: DbOpt = None,
    max_tokens: MaxTokensOpt = None, temperature: TemperatureOpt = None, top_k: TopKOpt = None,
    top_p: TopPOpt = None, min_p: MinPOpt = None, repeat_penalty: RepeatPenaltyOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Chat with a persona, answers streamed token by token."""
    settings = settings_from(config, persona=persona, model=model, llm=llm,
                             chat_format=chat_format, n_ctx=n_ctx, n_batch=n_batch,
                             n_threads=threads, personas_dir=personas_dir, sources_dir=sources_dir,
                             fetch_allow_private=fetch_allow_private, db=db,
                             parallel=1)  # one person: one sequence at a time
    found = get_persona(settings.persona, settings.user_personas_dir())
    if found.llm and not settings.llm and not settings.model:
        settings = settings.model_copy(update={"llm": found.llm})  # the persona's own LLM
    overrides = sampling_flags(max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                               top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty, seed=seed)
    store = Store(settings.db_path())
    try:
        if conversation is not None:
            resumed = store.get_conversation(conversation)
        elif new:
            resumed = store.create_conversation(found.name, user or login_name())
        else:
            resumed = store.conversation_for(found.name, user or login_name())
    except ChinwagError:
        store.close()
        raise
    try:
        knowledge = Knowledge(settings, store)
    except ChinwagError:
        store.close()
        raise
    backend = open_backend(settings)
    chatbot = Chatbot(backend, found, user=user, store=store, conversation=resumed,
                      knowledge=knowledge, **overrides)
    session = ChatSession(backend, chatbot, settings.user_personas_dir(), sys.stdout)
    try:
        if sys.stdin.isatty() and sys.stdout.isatty():
            from chinwag.cli.repl import run_repl

            run_repl(session, settings.cache_dir)
        else:
            run_piped(session, sys.stdin, sys.stdout)
    finally:
        session.wait_for_summary()
        backend.close()
        store.close()


def run_piped(session: ChatSession, lines: TextIO, out: TextIO) -> None:
    """Answer each non-empty input line (slash commands work too); one answer per line.

    A turn that fails (a message too long for the context) prints an error line and the
    session goes on with the next message.
    """
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/"):
            session.command(line)
            if session.done:
                return
            continue
        sources = ""
        try:
            for piece in session.ask(line):
                out.write(piece)
                out.flush()
            sources = session.sources_line() if session.chatbot.last_sources else ""
        except ChinwagError as e:
            print(f"error: {e}", file=sys.stderr)
        out.write("\n")
        out.flush()
        if sources:  # after the answer's line, so a terminal shows them apart
            print(sources, file=sys.stderr)
