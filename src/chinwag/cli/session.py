"""A chat session in the terminal: sending messages, streaming answers, slash commands.

Used by ``chinwag chat`` both interactively (``repl.py``) and with piped input.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Callable, Generator
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
  /reset                 start a new conversation (the old one stays stored)
  /history               show the conversation so far
  /forget                delete this conversation from the database, start a new one
  /export FILE           save this conversation as JSON (chinwag conversations import FILE)
  /pin FACT              pin a fact: always sent to this persona from now on (/pin alone
                         lists them, /unpin forgets them all)
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
    known = {f.name for f in fields(SamplingParams)} - {"json_schema", "cache_prompt",
                                                        "logit_bias", "logprobs"}
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
        self._summarizing: threading.Thread | None = None

    def ask(self, text: str) -> Generator[str, None, None]:
        """Send ``text``; yields the answer in pieces. Closing it early stops generation.

        When the persona keeps a summary and one is due, it is written in a background thread
        once the answer is complete (while the person reads and types); the next ``ask`` waits
        for it to finish first.

        Raises:
            ChinwagError: what ``Chatbot.send`` raises.
        """
        self.wait_for_summary()
        yield from self.chatbot.send(text)
        if self.chatbot.summary_due():
            self._summarizing = threading.Thread(target=self._summarize, daemon=True,
                                                 name="chinwag-summary")
            self._summarizing.start()

    def sources_line(self) -> str:
        """What went into the last answer, for people: ``sources: Goats of Limbo
        (http://...), 212 tokens; news: timeout``."""
        shown = []
        for report in self.chatbot.last_sources:
            name = report.title or report.name
            where = f" ({report.url})" if report.url and report.url != name else ""
            shown.append(f"{name}{where}: {report.error}" if report.error
                         else f"{name}{where}, {report.tokens} tokens")
        return "sources: " + "; ".join(shown)

    def _summarize(self) -> None:
        try:
            self.chatbot.update_summary()
        except ChinwagError as e:
            self._say(f"(the conversation summary was not updated: {e})")

    def wait_for_summary(self) -> None:
        """Wait until a summary being written in the background is done."""
        if self._summarizing is not None:
            self._summarizing.join()
            self._summarizing = None

    def command(self, line: str) -> None:
        """Run one slash command (``line`` starts with "/"). Errors are printed, not raised."""
        name, _, rest = line[1:].strip().partition(" ")
        handlers: dict[str, Callable[[str], None]] = {
            "set": self._set, "show": lambda _: self._show(), "reset": lambda _: self._reset(),
            "persona": self._persona, "help": lambda _: self._say(HELP),
            "history": lambda _: self._history(), "forget": lambda _: self._forget(),
            "export": self._export, "pin": self._pin, "unpin": lambda _: self._unpin(),
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
                 f"history: {len(self.chatbot.log)} messages  memory: "
                 f"{persona.memory.policy}  conversation: {self.chatbot.conversation_id}"]
        self._say("\n".join(lines))

    def _reset(self) -> None:
        self.wait_for_summary()
        self.chatbot.reset()
        self._say("A new conversation starts.")

    def _history(self) -> None:
        bot = self.chatbot
        names = {"user": bot.persona.speakers(bot.user).user,
                 "assistant": bot.persona.display_name}
        lines = [f"{names.get(m.role, m.role)}: {m.content}"
                 + ("" if m.complete else "  [incomplete]") for m in bot.log]
        if bot.summary:
            lines.insert(0, f"(summary of earlier turns)\n{bot.summary}\n")
        self._say("\n".join(lines) if lines else "No messages yet.")

    def _forget(self) -> None:
        self.wait_for_summary()
        self.chatbot.forget()
        self._say("This conversation is deleted; a new one starts.")

    def _pin(self, fact: str) -> None:
        bot = self.chatbot
        owner = bot.conversation.user if bot.conversation else None
        if bot.store is None or owner is None:
            self._say("Facts are pinned for a user in the conversation database; "
                      "this conversation is not stored.")
            return
        if fact:
            bot.store.add_fact(bot.persona.name, owner, fact)
            bot.user_facts = bot.store.facts(bot.persona.name, owner)
        self._say("\n".join(f"- {f}" for f in [*bot.persona.facts, *bot.user_facts])
                  or "No pinned facts.")

    def _unpin(self) -> None:
        bot = self.chatbot
        owner = bot.conversation.user if bot.conversation else None
        if bot.store is not None and owner is not None:
            n = bot.store.clear_facts(bot.persona.name, owner)
            bot.user_facts = []
            self._say(f"Unpinned {n} fact(s).")

    def _export(self, rest: str) -> None:
        bot = self.chatbot
        if not rest:
            self._say("Usage: /export FILE")
            return
        if bot.store is None or bot.conversation_id is None:
            self._say("Nothing to export: this conversation is not stored.")
            return
        self.wait_for_summary()
        path = Path(rest).expanduser()
        try:
            path.write_text(json.dumps(bot.store.export_conversation(bot.conversation_id),
                                       indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        except OSError as e:
            self._say(f"error: cannot write {path}: {e.strerror}")
            return
        self._say(f"Saved {len(bot.log)} messages to {path}.")

    def _persona(self, name: str) -> None:
        if not name:
            self._say("Usage: /persona NAME")
            return
        self.chatbot.switch(get_persona(name, self.personas_dir))
        self._say(f"Now talking to {self.chatbot.persona.display_name} ({name}).")

    def _bye(self) -> None:
        self.done = True
