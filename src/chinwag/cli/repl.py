"""The interactive chat loop (prompt_toolkit): input history, multi-line input, Ctrl-C.

Like Ollama's REPL: ``>>>`` prompt, a ``\"\"\"`` block for multi-line messages, Ctrl-C stops
the answer being generated, Ctrl-D or ``/bye`` leaves.
"""

from __future__ import annotations

from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from chinwag.cli.session import ChatSession
from chinwag.errors import ChinwagError

BOLD, DIM, RESET = "\033[1m", "\033[2m", "\033[0m"
FENCE = '"""'


def _history(cache_dir: Path) -> History:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        return FileHistory(str(cache_dir / "chat_history"))
    except OSError:
        return InMemoryHistory()


def read_message(prompt: PromptSession[str]) -> str:
    """Read one message: a line, or a ``\"\"\"`` ... ``\"\"\"`` block of several lines.

    Raises:
        KeyboardInterrupt: Ctrl-C at the prompt.
        EOFError: Ctrl-D.
    """
    line = prompt.prompt(">>> ")
    if not line.lstrip().startswith(FENCE):
        return line
    body = line.lstrip()[len(FENCE):]
    if body.rstrip().endswith(FENCE) and body.strip():
        return body.rstrip()[: -len(FENCE)].strip()
    lines = [body]
    while True:
        more = prompt.prompt("... ")
        if FENCE in more:
            lines.append(more[: more.index(FENCE)])
            return "\n".join(lines).strip()
        lines.append(more)


def stream_answer(session: ChatSession, text: str) -> None:
    """Send ``text`` and print the answer as it streams; Ctrl-C stops it."""
    out = session.out
    out.write(f"{BOLD}{session.chatbot.persona.display_name}:{RESET} ")
    out.flush()
    stream = None
    try:
        stream = session.ask(text)
        for piece in stream:
            out.write(piece)
            out.flush()
        if session.chatbot.last_sources:
            out.write(f"\n{DIM}{session.sources_line()}{RESET}")
    except KeyboardInterrupt:
        out.write(f" {DIM}[stopped]{RESET}")
    except ChinwagError as e:
        out.write(f"\nerror: {e}")
    finally:
        if stream is not None:
            stream.close()  # frees the engine at once, whatever stopped the loop
    out.write("\n")
    out.flush()


def run_repl(session: ChatSession, cache_dir: Path) -> None:
    """Chat until ``/bye`` or Ctrl-D."""
    prompt: PromptSession[str] = PromptSession(history=_history(cache_dir))
    persona = session.chatbot.persona
    out = session.out
    info = session.backend.info()
    out.write(f"{DIM}Talking to {persona.display_name} ({persona.name}) on {info.name}. "
              f"Type /help for commands, /bye to leave.{RESET}\n")
    if persona.greeting:
        out.write(f"{BOLD}{persona.display_name}:{RESET} {persona.greeting}\n")
    out.flush()
    while not session.done:
        try:
            text = read_message(prompt)
        except KeyboardInterrupt:
            out.write("Use Ctrl-D or /bye to leave.\n")
            continue
        except EOFError:
            break
        text = text.strip()
        if not text:
            continue
        if text.startswith("/"):
            session.command(text)
            continue
        stream_answer(session, text)
