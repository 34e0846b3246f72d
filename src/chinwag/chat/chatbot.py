"""``Chatbot``: a persona talking with one person, on any backend.

Each turn sends the persona's preamble (system prompt with pinned facts and the running
summary, example exchanges; never trimmed), the part of the history the persona's memory policy
lets through and that fits (``chat.memory``), and the new message. With a ``Store`` the
conversation is saved as it goes (the user's message when the turn starts, the reply when it
ends) and resumed by id; without one it lives in memory.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import replace
from typing import Any

from chinwag.backends.base import LanguageBackend
from chinwag.chat.fitting import tidy_reply
from chinwag.chat.memory import (
    Heard,
    fold_overheard,
    in_window,
    replayable,
    summarize,
    with_overheard,
)
from chinwag.chat.persona import Persona
from chinwag.chat.turn import Turn, build_turn
from chinwag.errors import BackendError
from chinwag.knowledge.policy import OnSourceError
from chinwag.knowledge.service import Gathered, Knowledge, Plan, SourceReport, merge_context
from chinwag.prompting.base import ChatFormat, Prompt
from chinwag.store import Conversation, Store, StoredMessage
from chinwag.tools import Reply, ReplyCollector, ToolRequest
from chinwag.types import ContextPiece, Done, Event, Message, SamplingParams


class Chatbot:
    """A conversation between a persona and one person.

    Args:
        backend: the model.
        persona: who the chatbot is.
        user: the person's name in the transcript (default: the persona's ``user_name``).
        store: where the conversation is saved (default: nowhere, it lives in memory).
        conversation: with a store, the conversation to continue (its id, or the
            ``Conversation``); without one, a new conversation is created for
            (persona, ``user``).
        params: sampling settings to start from (default: chinwag's defaults), under the
            persona's own settings.
        knowledge: where the persona's knowledge comes from (sources, pages, collections);
            without it the prefixes of messages (``|CONTEXT|``, a URL, ``|RAG|``) are text.
        **overrides: sampling settings that win over the persona's (``temperature=0``...).

    Raises:
        InvalidParams: an override is unknown or out of range.
        ConversationNotFound: no conversation has the id given.
        StoreError: the store cannot be read.
    """

    def __init__(self, backend: LanguageBackend, persona: Persona, *, user: str | None = None,
                 store: Store | None = None, conversation: str | Conversation | None = None,
                 params: SamplingParams | None = None, knowledge: Knowledge | None = None,
                 **overrides: Any) -> None:
        self.backend = backend
        self.knowledge = knowledge
        self.context: list[ContextPiece] = []
        self.last_sources: list[SourceReport] = []
        self.user = user
        self.store = store
        self.last: Done | None = None
        self._base_params = params
        self._overrides: dict[str, Any] = {}
        self.persona = persona
        self._apply(persona)
        self.set(**overrides)
        self.conversation: Conversation | None = None
        self.log: list[StoredMessage] = []
        self.summary = ""
        self.summarized_through = -1
        self.user_facts: list[str] = []
        self._left_out: list[StoredMessage | Heard] = []
        if store is not None:
            self._open(store, conversation)

    def _open(self, store: Store, conversation: str | Conversation | None) -> None:
        if conversation is None:
            found = store.create_conversation(self.persona.name, self.user)
        else:
            cid = conversation if isinstance(conversation, str) else conversation.id
            found = store.get_conversation(cid)
        self.conversation = found
        self.log = store.messages(found.id)
        self.summary, self.summarized_through = found.summary, found.summarized_through
        self.user_facts = store.facts(found.persona, found.user) if found.user else []
        self.context = store.context(found.id)

    @property
    def conversation_id(self) -> str | None:
        """The stored conversation's id (None without a store)."""
        return self.conversation.id if self.conversation else None

    @property
    def history(self) -> list[Message]:
        """Every message of the conversation so far, oldest first (what was said, not what
        the next prompt will send: see ``prompt_for``)."""
        return [Message(m.role, m.content) for m in self.log]

    @property
    def chat_format(self) -> ChatFormat:
        """The chat format the turns are rendered in (the model's own template wins over the
        persona's named format: ``LanguageBackend.format_for``)."""
        return self.backend.format_for(self.persona.chat_format)

    def _apply(self, persona: Persona) -> None:
        self.persona = persona
        self.params = persona.sampling_params(self._base_params).with_(**self._overrides)

    def set(self, **changes: Any) -> SamplingParams:
        """Change sampling settings for the next turns; returns the settings now in force.

        Raises:
            InvalidParams: an unknown name or a value out of range (nothing is changed).
        """
        params = self.params.with_(**changes)
        self._overrides.update(changes)
        self.params = params
        return params

    def switch(self, persona: Persona) -> None:
        """Talk as another persona from the next turn on; the history is kept."""
        self._apply(persona)

    def reset(self) -> None:
        """Start a new conversation (the persona and settings stay; with a store, the old
        conversation stays stored and a new one is created)."""
        self.log, self.summary, self.summarized_through = [], "", -1
        self._left_out = []
        self.context, self.last_sources = [], []
        self.last = None
        if self.store is not None:
            owner = self.conversation.user if self.conversation else self.user
            self.conversation = self.store.create_conversation(self.persona.name, owner)

    def forget(self) -> None:
        """Delete the conversation (from the store too) and start a new one.

        Raises:
            StoreError: the store cannot be written.
        """
        if self.store is not None and self.conversation is not None:
            self.store.delete_conversation(self.conversation.id)
        self.reset()

    def prompt_for(self, text: str) -> tuple[Prompt, int]:
        """The prompt the next turn would send for ``text``, and how many history messages it
        leaves out (by the memory policy's window and by the token budget).

        The history allowed by the persona's memory policy is cut, oldest first (a user turn
        with its answer), until the prompt plus ``max_tokens`` fits in the context window;
        the preamble is never dropped.

        Raises:
            ContextOverflow: the preamble and ``text`` alone do not fit (both counts given).
        """
        turn, left_out = self._build(text, self.context)
        return turn.prompt, left_out

    def _build(self, text: str, context: Sequence[ContextPiece],
               tools: ToolRequest | None = None) -> tuple[Turn, int]:
        usable, heard = fold_overheard(replayable(self.log))
        window = in_window(usable, self.persona.memory)
        turn = build_turn(
            self.backend, self.persona,
            [*(Message(m.role, m.content) for m in window),
             Message("user", with_overheard(heard, text))],
            self.params, user=self.user, summary=self.summary, facts=self.user_facts,
            context=context, counts=[*(m.tokens for m in window), None], tools=tools)
        sent = window[turn.dropped:]
        first = sent[0].seq if sent else None
        self._left_out = [m for m in usable if first is None or m.seq < first]
        return turn, len(usable) - len(sent)

    def plan(self, text: str, *, param: str = "prompt", given: str | None = None) -> Plan:
        """The question of ``text`` and the knowledge it needs (``Knowledge.plan``: reads
        the message's prefix, picks the persona's sources; no network). ``given``: a URL
        or context text given beside the message.

        Raises:
            InvalidParams: an unterminated ``|CONTEXT|`` (HTTP 400).
            UnknownSource: ``|RAG|name|/RAG|`` names no source (HTTP 404).
        """
        if self.knowledge is None:
            return Plan(text)
        return self.knowledge.plan(text, self.persona, backend=self.backend, param=param,
                                   given=given)

    def gather(self, plan: Plan, on_source_error: OnSourceError | None = None) -> Gathered:
        """Fetch and search the knowledge ``plan`` wants (``Knowledge.gather``), within the
        persona's budgets, in its model's tokens.

        Args:
            on_source_error: ``skip`` or ``fail`` (default: the persona's).

        Raises:
            FetchError: a source failed and failures fail (HTTP 422).
        """
        if self.knowledge is None or not plan.wanted:
            return Gathered(plan.question)
        return self.knowledge.gather(
            plan, self.backend.count_tokens,
            on_error=on_source_error or self.persona.context.on_source_error,
            top_k=self.persona.knowledge.top_k)

    def send(self, text: str, gathered: Gathered | None = None) -> Generator[str, None, None]:
        """Send one message; yields the reply in pieces as they are generated.

        The message's knowledge prefix is read and its knowledge gathered first (unless
        ``gathered`` is given: ``plan`` and ``gather`` did it); the question is what is
        stored, and the knowledge is kept with the conversation, within the persona's
        context budget (the oldest pieces go first), and sent with the system prompt.
        ``last_sources`` says what went in.

        The reply is stripped of surrounding whitespace. Closing the iterator early (Ctrl-C)
        stops generation; the message and the part of the reply produced so far stay in the
        history, marked incomplete. After the last piece, ``last`` holds the ``Done`` event
        (finish reason, usage). With a store, the message is saved before generation starts
        and the reply when it ends.

        Raises:
            ContextOverflow: the message cannot fit even with no history (nothing is saved).
            InvalidParams, UnknownSource, FetchError: see ``plan`` and ``gather``.
            BackendError: the model failed.
            StoreError: the store cannot be written.
        """
        if gathered is None:
            gathered = self.gather(self.plan(text))
        context, gone = merge_context(self.context, gathered.pieces,
                                      self.persona.context.budget_tokens)
        turn, _ = self._build(gathered.question, context)
        self._keep_context(context, gathered, gone)
        events = self.backend.generate_chat(turn.prompt, turn.params)
        return self._turn(gathered.question, events)

    def send_tools(self, text: str, tools: ToolRequest) -> Reply:
        """Send one message offering ``tools``; the whole answer: text, or a call whose
        arguments are valid by its tool's schema (``LanguageBackend.generate_tools``), with
        ``auto``'s decision and scores.

        Knowledge and memory work as in ``send``. The question is remembered, and so is the
        answer: its text, or for a call ``name(arguments)`` (a stored conversation keeps
        text; run the tool and send its result in the next message).

        Raises:
            What ``send`` raises; ``InvalidParams`` (``tools_not_supported``) when the
            backend cannot call tools; ``OutputInvalid`` when a call never validates.
        """
        gathered = self.gather(self.plan(text))
        context, gone = merge_context(self.context, gathered.pieces,
                                      self.persona.context.budget_tokens)
        turn, _ = self._build(gathered.question, context, tools)
        self._keep_context(context, gathered, gone)
        events = self.backend.generate_tools(turn.prompt, turn.params, tools)
        asked = self._remember_question(gathered.question)
        collector, reply = ReplyCollector(), None
        try:
            for event in events:
                reply = collector.add(event)
                if reply is not None:
                    reply = replace(reply, text=reply.text.strip())
                    self.last = reply.done
                    return reply
            raise BackendError("the stream ended without a Done event")
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            said = reply.text if reply is not None else ""
            if reply is not None and reply.call is not None:
                said = f"{said}\n{reply.call.name}({reply.call.arguments})".strip()
            self._remember_answer(asked, said, complete=reply is not None and
                                  reply.done.finish_reason != "cancelled")

    def _keep_context(self, context: list[ContextPiece], gathered: Gathered,
                      gone: Sequence[str]) -> None:
        if self.store is not None and self.conversation is not None:
            for key in gone:
                self.store.drop_context(self.conversation.id, key)
            for piece in gathered.pieces:
                if piece in context:
                    self.store.put_context(self.conversation.id, piece)
        self.context = context
        fresh = {p.key for p in gathered.pieces}
        self.last_sources = [*gathered.reports,
                             *(SourceReport.of(p) for p in context if p.key not in fresh)]

    def _turn(self, text: str, events: Iterator[Event]) -> Generator[str, None, None]:
        asked = self._remember_question(text)
        parts: list[str] = []
        done = False
        try:
            for event in tidy_reply(events):
                if isinstance(event, Done):
                    self.last = event
                    done = event.finish_reason != "cancelled"  # stopped by someone else
                    break
                parts.append(event.text)
                yield event.text
        finally:
            if hasattr(events, "close"):
                events.close()
            self._remember_answer(asked, "".join(parts), complete=done)

    def _remember_question(self, text: str) -> StoredMessage:
        tokens = self.backend.count_tokens(text)
        if self.store is not None and self.conversation is not None:
            asked = self.store.begin_turn(self.conversation.id, text, tokens=tokens)
        else:
            asked = StoredMessage(id=-1, conversation_id="", seq=len(self.log), role="user",
                                  content=text, created_at=time.time(), tokens=tokens,
                                  complete=False)
        self.log.append(asked)
        return asked

    def _remember_answer(self, asked: StoredMessage, reply: str, *, complete: bool) -> None:
        tokens = self.backend.count_tokens(reply)
        model = self.model_name
        sources = [report.as_dict() for report in self.last_sources]
        if self.store is not None:
            answer = self.store.finish_turn(asked, reply, tokens=tokens, complete=complete,
                                            model=model, sources=sources)
        else:
            answer = StoredMessage(id=-1, conversation_id="", seq=asked.seq + 1,
                                   role="assistant", content=reply, created_at=time.time(),
                                   tokens=tokens, complete=complete, model=model,
                                   sources=tuple(sources))
        self.log[-1] = StoredMessage(**{**asked.__dict__, "complete": complete})
        self.log.append(answer)

    @property
    def model_name(self) -> str:
        """The model answering: its id in a server (``ModelHandle.model_id``), else the
        backend's model name."""
        return str(getattr(self.backend, "model_id", None) or self.backend.info().name)

    def truncate(self, seq: int) -> int:
        """Forget the messages from ``seq`` on, from the store too (an edited message and
        what followed it; a reply to answer again). A summary that covered any of them is
        dropped. Returns how many were forgotten.

        Raises:
            StoreError: the store cannot be written.
        """
        if self.store is not None and self.conversation is not None:
            self.store.delete_messages_from(self.conversation.id, seq)
            found = self.store.get_conversation(self.conversation.id)
            self.summary, self.summarized_through = found.summary, found.summarized_through
        elif self.summarized_through >= seq:
            self.summary, self.summarized_through = "", -1
        gone = [m for m in self.log if m.seq >= seq]
        self.log = [m for m in self.log if m.seq < seq]
        self._left_out = []
        self.last = None
        return len(gone)

    def take_back(self) -> int:
        """Forget the last turn if it did not complete (the last user message and what
        follows it), from the store too: a turn cancelled or failed that should leave no
        trace (``npc``). Returns how many messages were forgotten (0: the last turn
        completed, or there is none).

        Raises:
            StoreError: the store cannot be written.
        """
        asked = next((m for m in reversed(self.log) if m.role == "user"), None)
        if asked is None or asked.complete:
            return 0
        if self.store is not None and self.conversation is not None:
            self.store.delete_messages_from(self.conversation.id, asked.seq)
        gone = [m for m in self.log if m.seq >= asked.seq]
        self.log = [m for m in self.log if m.seq < asked.seq]
        self.last = None
        return len(gone)

    def summary_due(self) -> bool:
        """Whether the persona keeps a summary and at least ``summary_batch`` messages left
        out of the last prompt are not in it yet (then call ``update_summary``, after the
        reply has been delivered)."""
        memory = self.persona.memory
        if memory.policy != "summary":
            return False
        fresh = [m for m in self._left_out if m.seq > self.summarized_through]
        return len(fresh) >= memory.summary_batch

    def update_summary(self) -> bool:
        """Bring the running summary up to date with the messages the last prompt left out
        (one model call); saved with the conversation. Returns whether it changed.

        Call it off the hot path: after the reply has been sent.

        Raises:
            BackendError: the model failed.
            StoreError: the store cannot be written.
        """
        fresh = [m for m in self._left_out if m.seq > self.summarized_through]
        if not fresh:
            return False
        summary = summarize(self.backend, self.summary,
                            [Message(m.role, m.content) for m in fresh],
                            self.persona.speakers(self.user), self.persona.memory)
        through = fresh[-1].seq
        if self.store is not None and self.conversation is not None:
            self.store.set_summary(self.conversation.id, summary, through)
        self.summary, self.summarized_through = summary, through
        return True
