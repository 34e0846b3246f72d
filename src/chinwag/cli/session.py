"""A chat session in the terminal: sending messages, streaming answers, slash commands.

Used by ``chinwag chat`` both interactively (``repl.py``) and with piped input.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TextIO

from chinwag.backends import LanguageBackend
from chinwag.chat import Chatbot, get_persona
from chinwag.errors import ChinwagError, InvalidParams
from chinwag.types import SamplingParams

HELP = """\
Commands:
  /set <param> <value>   change a sampling setting (temperature, top_k, top_p, min_p,
                         repeat_penalty, max_tokens, seed, stop); /set seed none clears it
  /show                  show the persona, the model and the settings in force
  /reset                 forget the conversation
  /persona NAME          talk to another persona (the conversation is kept)
  /help                  this help
  /bye                   leave (Ctrl-D too)
Multi-line input: start with \"\"\" and end with \"\"\".
Ctrl-C stops an answer being generated."""

_INT_PARAMS = {"max_tokens", "top_k", "repeat_last_n", "seed"}


def parse_value(param: str, raw: str) -> Any:
    """Read a ``/set`` value as the parameter's type.

    Raises:
        InvalidParams: unknown parameter or a value that is not of its type.
    """
    known = {f.name for f in fields(SamplingParams)} - {"json_schema"}
    if param not in known:
        raise InvalidParams(f"unknown parameter {param!r}; known: {', '.join(sorted(known))}",
                            param=param)
    if raw.lower() in {"none", "null", "off"} and param == "seed":
        return None
    if param == "stop":
        return tuple(s.encode().decode("unicode_escape") for s in shlex.split(raw))
    try:
        return int(raw) if param in _INT_PARAMS else float(raw)
    except ValueError:
        kind = "an integer" if param in _INT_PARAMS else "a number"
        raise InvalidParams(f"{param} must be {kind}, got {raw!r}", param=param) from None


class ChatSession:
    """Holds the chatbot and answers one line of input at a time.

    Args:
        backend: the model.
        chatbot: the conversation.
        personas_dir: where ``/persona`` looks for user personas.
        out: where answers and messages are written.
    """

    def __init__(self, backend: LanguageBackend, chatbot: Chatbot, personas_dir: Path | None,
                 out: TextIO) -> None:
        self.backend = backend
        self.chatbot = chatbot
        self.personas_dir = personas_dir
        self.out = out
        self.done = False

    def command(self, line: str) -> None:
        """Run one slash command (``line`` starts with "/"). Errors are printed, not raised."""
        name, _, rest = line[1:].strip().partition(" ")
        handlers: dict[str, Callable[[str], None]] = {
            "set": self._set, "show": lambda _: self._show(), "reset": lambda _: self._reset(),
            "persona": self._persona, "help": lambda _: self._say(HELP),
            "bye": lambda _: self._bye(), "exit": lambda _: self._bye(),
            "quit": lambda _: self._bye(), "?": lambda _: self._say(HELP),
        }
        handler = handlers.get(name.lower())
        if handler is None:
            self._say(f"Unknown command /{name}. Type /help for the commands.")
            return
        try:
            handler(rest.strip())
        except ChinwagError as e:
            self._say(f"error: {e}")

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _set(self, rest: str) -> None:
        param, _, raw = rest.partition(" ")
        if not param or not raw.strip():
            self._say("Usage: /set <param> <value>, e.g. /set temperature 0")
            return
        value = parse_value(param, raw.strip())
        self.chatbot.set(**{param: value})
        self._say(f"Set {param} to {value!r}.")

    def _show(self) -> None:
        info = self.backend.info()
        persona = self.chatbot.persona
        params = self.chatbot.params
        lines = [f"persona: {persona.name} ({persona.display_name}) - {persona.description}",
                 f"model: {info.name}  n_ctx: {info.n_ctx}  "
                 f"chat format: {self.chatbot.chat_format.name}",
                 "settings: " + "  ".join(f"{k}={getattr(params, k)!r}"
                                          for k in SamplingParams.names() if k != "json_schema"),
                 f"history: {len(self.chatbot.history)} messages"]
        self._say("\n".join(lines))

    def _reset(self) -> None:
        self.chatbot.reset()
        self._say("The conversation is forgotten.")

    def _persona(self, name: str) -> None:
        if not name:
            self._say("Usage: /persona NAME")
            return
        self.chatbot.switch(get_persona(name, self.personas_dir))
        self._say(f"Now talking to {self.chatbot.persona.display_name} ({name}).")

    def _bye(self) -> None:
        self.done = True
