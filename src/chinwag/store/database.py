"""The conversation database: conversations, their messages and pinned facts in one SQLite file.

Schema (version 5; times are unix seconds)::

    conversations  id TEXT PRIMARY KEY (uuid4 hex), persona, user (NULL: nobody in particular),
                   created_at, updated_at (the last message added),
                   summary ('' when none), summarized_through (seq of the last message the
                   summary covers, -1 when none), scope ('' for the persona's own
                   conversations; an NPC's id for that NPC's memory of a player: version 3),
                   title ('' until the user names it: then the first user message stands
                   in for it; version 4)
    messages       id (autoincrement), conversation_id -> conversations ON DELETE CASCADE,
                   seq (0, 1, 2... within its conversation), role (system/user/assistant),
                   content, created_at, tokens (NULL when unknown),
                   complete (0 while a turn is under way or after it failed), UNIQUE(conv, seq),
                   model (the model that wrote a reply, NULL when unknown; version 4),
                   sources (JSON list of the knowledge sources a reply used; version 4);
                   a ``system`` message inside a conversation is a line the persona
                   overheard (``npc``), joined to the next user message in prompts
    facts          id (autoincrement), persona, user, text, created_at: what a user asked
                   the persona to remember (persona-wide facts live in persona files)
    conversation_context  (conversation_id, key) -> name, kind, url, title, describe, text,
                   tokens, fetched_at, added_at: knowledge kept with a conversation
                   (``types.ContextPiece``; version 2)
    knowledge_documents, knowledge_chunks, knowledge_fts: fact collections, their documents
                   cut into chunks (with an optional float32 embedding), and the FTS5 index
                   over the chunks' text kept in step by triggers (``knowledge.collections``;
                   version 2)
    files, batches  the server's uploaded files (the bytes live in a folder) and batches,
                   with their status, request counts and result files (``batch.files``,
                   ``batch.jobs``; version 5)

Versioning: ``MIGRATIONS`` is append-only. Migration ``i`` takes a file from
``PRAGMA user_version`` ``i`` to ``i + 1``, each in its own ``BEGIN IMMEDIATE`` transaction that
also sets ``user_version``, so a crash leaves the file at a whole version. A file whose version
is newer than ``SCHEMA_VERSION`` was written by a newer chinwag: it is refused before anything
is written to it.

Journal: WAL, so readers never wait for the writer, with ``synchronous=NORMAL`` (a power cut can
lose the last commits but never corrupts the file). Every write is one ``BEGIN IMMEDIATE``
transaction, which takes the write lock up front: other connections and processes wait for
it (up to the busy timeout) instead of failing with "database is locked" halfway through.

Threads: a ``Store`` holds one connection opened with ``check_same_thread=False`` in
autocommit mode (transactions are explicit) and a lock taken around every operation, so one
``Store`` can be shared by an asyncio loop and worker threads. Several ``Store`` objects or
processes may use the same file at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chinwag.errors import (
    BadExport,
    ConversationNotFound,
    InvalidParams,
    StoreCorrupt,
    StoreError,
    StoreVersionError,
)
from chinwag.types import ROLES, ContextPiece, Message, Role

MIGRATIONS: tuple[str, ...] = (
    # 1: conversations, messages, facts
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        persona TEXT NOT NULL,
        user TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        summary TEXT NOT NULL DEFAULT '',
        summarized_through INTEGER NOT NULL DEFAULT -1
    );
    CREATE INDEX conversations_by_owner ON conversations (persona, user, updated_at);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        created_at REAL NOT NULL,
        tokens INTEGER,
        complete INTEGER NOT NULL,
        UNIQUE (conversation_id, seq)
    );
    CREATE TABLE facts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        persona TEXT NOT NULL,
        user TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX facts_by_owner ON facts (persona, user);
    """,
    # 2: knowledge kept with a conversation; fact collections searched with FTS5
    """
    CREATE TABLE conversation_context (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        url TEXT,
        title TEXT,
        describe TEXT NOT NULL DEFAULT '',
        text TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        fetched_at REAL,
        added_at REAL NOT NULL,
        PRIMARY KEY (conversation_id, key)
    );
    CREATE TABLE knowledge_documents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT NOT NULL,
        title TEXT NOT NULL,
        url TEXT,
        text TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX knowledge_documents_by_collection ON knowledge_documents (collection, id);
    CREATE TABLE knowledge_chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        document_id INTEGER NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
        collection TEXT NOT NULL,
        seq INTEGER NOT NULL,
        text TEXT NOT NULL,
        tokens INTEGER,
        vector BLOB
    );
    CREATE INDEX knowledge_chunks_by_collection ON knowledge_chunks (collection, document_id, seq);
    CREATE VIRTUAL TABLE knowledge_fts USING fts5(
        text, content = 'knowledge_chunks', content_rowid = 'id', tokenize = 'porter unicode61');
    CREATE TRIGGER knowledge_chunks_added AFTER INSERT ON knowledge_chunks BEGIN
        INSERT INTO knowledge_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER knowledge_chunks_removed AFTER DELETE ON knowledge_chunks BEGIN
        INSERT INTO knowledge_fts (knowledge_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    """,
    # 3: a conversation's scope: an NPC's id keeps each NPC's memory of a player apart
    """
    ALTER TABLE conversations ADD COLUMN scope TEXT NOT NULL DEFAULT '';
    CREATE INDEX conversations_by_scope ON conversations (persona, user, scope, updated_at);
    """,
    # 4: a conversation's title; the model and sources of each reply (the web page)
    """
    ALTER TABLE conversations ADD COLUMN title TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN model TEXT;
    ALTER TABLE messages ADD COLUMN sources TEXT;
    """,
    # 5: the server's uploaded files and batches (OpenAI's Files and Batches APIs)
    """
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        filename TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        input_file_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        completion_window TEXT NOT NULL,
        status TEXT NOT NULL,
        metadata TEXT,
        errors TEXT,
        output_file_id TEXT,
        error_file_id TEXT,
        total INTEGER NOT NULL DEFAULT 0,
        completed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        in_progress_at INTEGER,
        finalizing_at INTEGER,
        completed_at INTEGER,
        failed_at INTEGER,
        expired_at INTEGER,
        cancelling_at INTEGER,
        cancelled_at INTEGER
    );
    """,
)
SCHEMA_VERSION: int = len(MIGRATIONS)

EXPORT_FORMAT = "chinwag.conversation"
EXPORT_VERSION = 1

_CONVERSATION = """
    SELECT id, persona, user, created_at, updated_at, summary, summarized_through,
           (SELECT COUNT(*) FROM messages WHERE conversation_id = conversations.id), scope,
           title,
           COALESCE((SELECT content FROM messages WHERE conversation_id = conversations.id
                     AND role = 'user' ORDER BY seq LIMIT 1), '')
    FROM conversations
"""
_MESSAGE = """
    SELECT id, conversation_id, seq, role, content, created_at, tokens, complete, model, sources
    FROM messages
"""
TITLE_CHARS = 60  # a conversation's title taken from its first message is cut to this
_NEWEST_FIRST = " ORDER BY updated_at DESC, rowid DESC"


def default_db_path() -> Path:
    """Where the conversation database lives unless settings say otherwise.

    Returns:
        ``$XDG_DATA_HOME/chinwag/chinwag.db`` when that variable holds an absolute path,
        else ``~/.local/share/chinwag/chinwag.db``.
    """
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "chinwag" / "chinwag.db"


@dataclass(frozen=True)
class StoredMessage:
    """One message as stored.

    Attributes:
        id: unique across the whole database.
        conversation_id: the conversation it belongs to.
        seq: its position in the conversation: 0, 1, 2...
        role: ``system``, ``user`` or ``assistant``.
        content: the text.
        created_at: when it was stored, unix seconds.
        tokens: its length in tokens, when the caller knew it.
        complete: False for a user message whose reply has not been stored (yet), and for
            both messages of a turn that was cut short.
        model: the model that wrote a reply, when known.
        sources: the knowledge sources a reply used (``SourceReport.as_dict`` shapes).
    """

    id: int
    conversation_id: str
    seq: int
    role: Role
    content: str
    created_at: float
    tokens: int | None
    complete: bool
    model: str | None = None
    sources: tuple[dict[str, Any], ...] = ()

    def to_message(self) -> Message:
        """The message in the shape backends and chat formats take."""
        return Message(self.role, self.content)


@dataclass(frozen=True)
class Conversation:
    """A conversation between a persona and one person.

    Attributes:
        id: uuid4 hex (or the id given when it was created or imported).
        persona: the persona's name.
        user: who the persona is talking with; None for nobody in particular.
        created_at: unix seconds.
        updated_at: when a message was last added, unix seconds.
        summary: a summary of the older messages, ``""`` when none.
        summarized_through: seq of the last message the summary covers, -1 when none.
        message_count: how many messages it has.
        scope: ``""`` for the persona's own conversations; an NPC's id for the memory that
            NPC keeps of ``user`` (two NPCs of one persona remember a player apart).
        title: the title the user gave it, ``""`` when none (see ``heading``).
        opening: its first user message, ``""`` when none.
    """

    id: str
    persona: str
    user: str | None
    created_at: float
    updated_at: float
    summary: str
    summarized_through: int
    message_count: int
    scope: str = ""
    title: str = ""
    opening: str = ""

    @property
    def heading(self) -> str:
        """What a list of conversations shows: its title, else its first user message on one
        line, cut to ``TITLE_CHARS`` characters (with an ellipsis), else ``""``."""
        if self.title:
            return self.title
        line = " ".join(self.opening.split())
        return line if len(line) <= TITLE_CHARS else line[:TITLE_CHARS - 1].rstrip() + "…"


class Store:
    """The conversation database in one SQLite file, safe to share between threads.

    Args:
        path: the database file; it and its folders are created when missing.
        timeout: how long a write waits for another connection's write to finish, seconds.

    Raises:
        StoreVersionError: the file was written by a newer chinwag (it is left untouched).
        StoreCorrupt: the file is not a SQLite database, or a damaged one (left untouched).
        StoreError: the folder or file cannot be created, opened or written.

    Every method raises ``StoreError`` (naming the file) when SQLite fails; none lets a raw
    ``sqlite3`` error escape.
    """

    def __init__(self, path: Path | str, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db, found = _connect(self.path, timeout)
        try:
            self._migrate(found)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the file. Closing twice is harmless; any other use afterwards raises StoreError."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- conversations -------------------------------------------------------------------

    def create_conversation(self, persona: str, user: str | None,
                            conversation_id: str | None = None, *,
                            scope: str = "") -> Conversation:
        """Start a new, empty conversation.

        Args:
            conversation_id: the id to give it (default: a new uuid4 hex).
            scope: ``""``, or the NPC whose memory of ``user`` it is.

        Raises:
            StoreError: a conversation already has that id.
        """
        with self._transaction("create a conversation") as db:
            if conversation_id is not None and _exists(db, conversation_id):
                raise StoreError(f"{self.path}: a conversation with id {conversation_id!r} "
                                 "already exists")
            return _insert_conversation(db, persona, user, conversation_id, scope=scope)

    def get_conversation(self, conversation_id: str) -> Conversation:
        """The conversation with this id.

        Raises:
            ConversationNotFound: no conversation has that id.
        """
        with self._transaction("read a conversation", write=False) as db:
            return _conversation(db, conversation_id)

    def latest_conversation(self, persona: str, user: str, *,
                            scope: str = "") -> Conversation | None:
        """The conversation of this persona and user (in ``scope``: ``""``, or an NPC's
        id) updated most recently, or None."""
        with self._transaction("read conversations", write=False) as db:
            return _latest(db, persona, user, scope)

    def conversation_for(self, persona: str, user: str, *, scope: str = "") -> Conversation:
        """The conversation to resume with this persona and user: the latest, or a new one.

        Args:
            scope: ``""`` for the persona's own conversations, an NPC's id for the memory
                that NPC keeps of ``user``.

        Looking and creating happen in one transaction, so two processes asking at once get
        the same conversation.
        """
        with self._transaction("find or create a conversation") as db:
            return (_latest(db, persona, user, scope)
                    or _insert_conversation(db, persona, user, scope=scope))

    def list_conversations(self, *, user: str | None = None,
                           persona: str | None = None) -> list[Conversation]:
        """Conversations, the most recently updated first.

        Args:
            user: only this user's (default: everyone's).
            persona: only with this persona (default: every persona).
        """
        where, params = _owner_filter(user, persona)
        with self._transaction("list conversations", write=False) as db:
            rows = db.execute(_CONVERSATION + where + _NEWEST_FIRST, params).fetchall()
        return [Conversation(*row) for row in rows]

    def rename_conversation(self, conversation_id: str, title: str) -> Conversation:
        """Give a conversation a title (``""``: back to its first message); ``updated_at`` is
        left as it is.

        Raises:
            ConversationNotFound: no conversation has that id.
        """
        with self._transaction("rename a conversation") as db:
            cursor = db.execute("UPDATE conversations SET title = ? WHERE id = ?",
                                (title, conversation_id))
            if cursor.rowcount == 0:
                raise ConversationNotFound(conversation_id)
            return _conversation(db, conversation_id)

    def delete_conversation(self, conversation_id: str) -> None:
        """Delete a conversation and all its messages.

        Raises:
            ConversationNotFound: no conversation has that id.
        """
        with self._transaction("delete a conversation") as db:
            cursor = db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            if cursor.rowcount == 0:
                raise ConversationNotFound(conversation_id)

    def delete_user_conversations(self, user: str, persona: str | None = None) -> int:
        """Delete every conversation of a user (with one persona, or with all) and their messages.

        Returns:
            How many conversations were deleted.
        """
        where, params = _owner_filter(user, persona)
        with self._transaction("delete conversations") as db:
            return db.execute("DELETE FROM conversations" + where, params).rowcount

    # -- messages ------------------------------------------------------------------------

    def messages(self, conversation_id: str) -> list[StoredMessage]:
        """Every message of a conversation, in order (by seq).

        Raises:
            ConversationNotFound: no conversation has that id.
        """
        with self._transaction("read messages", write=False) as db:
            if not _exists(db, conversation_id):
                raise ConversationNotFound(conversation_id)
            rows = db.execute(_MESSAGE + " WHERE conversation_id = ? ORDER BY seq",
                              (conversation_id,)).fetchall()
        return [_message(row) for row in rows]

    def add_message(self, conversation_id: str, role: str, content: str, *,
                    tokens: int | None = None, complete: bool = True) -> StoredMessage:
        """Append a message to a conversation (it gets the next seq) and update ``updated_at``.

        Args:
            role: ``system``, ``user`` or ``assistant``.
            tokens: its length in tokens, when known.

        Raises:
            InvalidParams: an unknown role.
            ConversationNotFound: no conversation has that id.
        """
        with self._transaction("add a message") as db:
            return _append(db, conversation_id, role, content, tokens, complete)

    def delete_messages_from(self, conversation_id: str, seq: int) -> int:
        """Delete the messages of a conversation from ``seq`` on (a turn taken back: a
        cancelled or failed NPC reply; an edited message and what followed it). A summary
        that covered any of them is dropped (it would remember what is gone).

        Returns:
            How many were deleted.

        Raises:
            ConversationNotFound: no conversation has that id.
        """
        with self._transaction("delete messages") as db:
            if not _exists(db, conversation_id):
                raise ConversationNotFound(conversation_id)
            db.execute("UPDATE conversations SET summary = '', summarized_through = -1"
                       " WHERE id = ? AND summarized_through >= ?", (conversation_id, seq))
            return db.execute("DELETE FROM messages WHERE conversation_id = ? AND seq >= ?",
                              (conversation_id, seq)).rowcount

    def begin_turn(self, conversation_id: str, text: str, *,
                   tokens: int | None = None) -> StoredMessage:
        """Store what the user said, marked incomplete until ``finish_turn`` stores the reply.

        It is committed at once: if the process dies before the reply, the message stays in
        the conversation marked ``complete=False``.

        Raises:
            ConversationNotFound: no conversation has that id.
        """
        return self.add_message(conversation_id, "user", text, tokens=tokens, complete=False)

    def finish_turn(self, user_message: StoredMessage, reply: str, *,
                    tokens: int | None = None, complete: bool = True, model: str | None = None,
                    sources: Sequence[dict[str, Any]] = ()) -> StoredMessage:
        """Store the assistant's reply to a message from ``begin_turn``, in one transaction.

        Args:
            user_message: what ``begin_turn`` returned.
            reply: the reply's text (what was generated so far, when cut short).
            tokens: the reply's length in tokens, when known.
            complete: False when the reply was cut short; both messages are then left marked
                incomplete, else both are marked complete.
            model: the model that wrote it.
            sources: the knowledge sources it used.

        Returns:
            The stored reply.

        Raises:
            ConversationNotFound: the conversation was deleted meanwhile.
            StoreError: the user message is no longer in the conversation.
        """
        conversation_id = user_message.conversation_id
        with self._transaction("finish a turn") as db:
            stored = _append(db, conversation_id, "assistant", reply, tokens, complete,
                             model=model, sources=sources)
            cursor = db.execute(
                "UPDATE messages SET complete = ? WHERE id = ? AND conversation_id = ?",
                (complete, user_message.id, conversation_id))
            if cursor.rowcount == 0:
                raise StoreError(f"{self.path}: message {user_message.id} is not in "
                                 f"conversation {conversation_id!r}")
            return stored

    def set_summary(self, conversation_id: str, summary: str, summarized_through: int) -> None:
        """Replace a conversation's summary (``updated_at`` is left as it is).

        Args:
            summary: the summary's text, ``""`` for none.
            summarized_through: seq of the last message it covers, -1 for none.

        Raises:
            ConversationNotFound: no conversation has that id.
        """
        with self._transaction("set a summary") as db:
            cursor = db.execute(
                "UPDATE conversations SET summary = ?, summarized_through = ? WHERE id = ?",
                (summary, summarized_through, conversation_id))
            if cursor.rowcount == 0:
                raise ConversationNotFound(conversation_id)

    # -- pinned facts --------------------------------------------------------------------

    def add_fact(self, persona: str, user: str, text: str) -> int:
        """Pin a fact the persona should remember about a user.

        Returns:
            The fact's id.
        """
        with self._transaction("add a fact") as db:
            cursor = db.execute(
                "INSERT INTO facts (persona, user, text, created_at) VALUES (?, ?, ?, ?)",
                (persona, user, text, _now()))
            return cast(int, cursor.lastrowid)

    def facts(self, persona: str, user: str) -> list[str]:
        """The facts pinned for this persona and user, the oldest first."""
        with self._transaction("read facts", write=False) as db:
            rows = db.execute("SELECT text FROM facts WHERE persona = ? AND user = ? ORDER BY id",
                              (persona, user)).fetchall()
        return [text for (text,) in rows]

    def clear_facts(self, persona: str, user: str) -> int:
        """Forget every fact pinned for this persona and user.

        Returns:
            How many were forgotten.
        """
        with self._transaction("clear facts") as db:
            return db.execute("DELETE FROM facts WHERE persona = ? AND user = ?",
                              (persona, user)).rowcount

    # -- knowledge kept with a conversation -------------------------------------------------

    def put_context(self, conversation_id: str, piece: ContextPiece) -> None:
        """Keep ``piece`` with the conversation, replacing the one with the same key.

        Raises:
            ConversationNotFound: no conversation has that id.
        """
        with self._transaction("keep context with a conversation") as db:
            if not _exists(db, conversation_id):
                raise ConversationNotFound(conversation_id)
            db.execute(
                "INSERT OR REPLACE INTO conversation_context (conversation_id, key, name, kind,"
                " url, title, describe, text, tokens, fetched_at, added_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, piece.key, piece.name, piece.kind, piece.url, piece.title,
                 piece.describe, piece.text, piece.tokens, piece.fetched_at, _now()))

    def context(self, conversation_id: str) -> list[ContextPiece]:
        """The knowledge kept with a conversation, the oldest added first."""
        with self._transaction("read a conversation's context", write=False) as db:
            rows = db.execute(
                "SELECT key, name, kind, text, tokens, url, title, describe, fetched_at"
                " FROM conversation_context WHERE conversation_id = ? ORDER BY added_at, rowid",
                (conversation_id,)).fetchall()
        return [ContextPiece(*row) for row in rows]

    def drop_context(self, conversation_id: str, key: str) -> bool:
        """Forget one piece kept with a conversation. Returns whether there was one."""
        with self._transaction("drop context from a conversation") as db:
            return db.execute(
                "DELETE FROM conversation_context WHERE conversation_id = ? AND key = ?",
                (conversation_id, key)).rowcount > 0

    @contextmanager
    def transaction(self, action: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """The database connection inside one transaction, for modules that keep their own
        tables in this file (``knowledge.collections``): the lock held, ``BEGIN IMMEDIATE``
        to write, commit at the end, rollback on an error, and sqlite3 errors raised as
        ``StoreError`` naming the file and ``action`` ("add a document")."""
        with self._transaction(action, write=write) as db:
            yield db

    # -- export / import -----------------------------------------------------------------

    def export_conversation(self, conversation_id: str) -> dict[str, Any]:
        """A conversation as a JSON-ready document, for ``import_conversation``.

        Returns:
            ``{"format": "chinwag.conversation", "version": 1, "id", "persona", "user",
            "created_at", "updated_at", "summary", "summarized_through", "messages":
            [{"seq", "role", "content", "created_at", "tokens", "complete", "model",
            "sources"}, ...], "context": [{"key", "name", "kind", "text", "tokens", "url",
            "title", "describe", "fetched_at"}, ...], "scope", "title", "heading"}``, times
            in unix seconds, messages in order, the knowledge kept with it oldest first
            (``context``, ``scope``, ``title``, ``seq``, ``model`` and ``sources`` may be
            missing from older exports; ``heading`` is the title shown in lists).

        Raises:
            ConversationNotFound: no conversation has that id.
        """
        with self._transaction("export a conversation", write=False) as db:
            conversation = _conversation(db, conversation_id)
            rows = db.execute(_MESSAGE + " WHERE conversation_id = ? ORDER BY seq",
                              (conversation_id,)).fetchall()
        context = self.context(conversation_id)
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "id": conversation.id,
            "persona": conversation.persona,
            "user": conversation.user,
            "created_at": conversation.created_at,
            "updated_at": conversation.updated_at,
            "summary": conversation.summary,
            "summarized_through": conversation.summarized_through,
            "messages": [
                {"seq": m.seq, "role": m.role, "content": m.content,
                 "created_at": m.created_at, "tokens": m.tokens, "complete": m.complete,
                 "model": m.model, "sources": list(m.sources) or None}
                for m in map(_message, rows)
            ],
            "context": [dataclasses.asdict(piece) for piece in context],
            "scope": conversation.scope,
            "title": conversation.title,
            "heading": conversation.heading,
        }

    def import_conversation(self, data: Any) -> Conversation:
        """Store a document from ``export_conversation`` (usually read back from JSON).

        The conversation keeps its id unless one here already has it; then it gets a new one.
        Everything is written in one transaction: on any error nothing is.

        Raises:
            StoreError: the document is not a valid export; the message names the field and
                the problem (``messages.3.role: Input should be 'system', 'user' or
                'assistant'``).
        """
        doc = _parse_export(data, self.path)
        with self._transaction("import a conversation") as db:
            conversation_id = None if _exists(db, doc.id) else doc.id
            conversation = _insert_conversation(
                db, doc.persona, doc.user, conversation_id, created_at=doc.created_at,
                updated_at=doc.updated_at, summary=doc.summary,
                summarized_through=doc.summarized_through, scope=doc.scope, title=doc.title)
            db.executemany(
                "INSERT INTO messages (conversation_id, seq, role, content, created_at, tokens,"
                " complete, model, sources) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(conversation.id, seq, m.role, m.content, m.created_at, m.tokens, m.complete,
                  m.model, json.dumps(m.sources) if m.sources else None)
                 for seq, m in enumerate(doc.messages)])
            db.executemany(
                "INSERT INTO conversation_context (conversation_id, key, name, kind, url, title,"
                " describe, text, tokens, fetched_at, added_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(conversation.id, c.key, c.name, c.kind, c.url, c.title, c.describe, c.text,
                  c.tokens, c.fetched_at, doc.updated_at + i * 1e-6)
                 for i, c in enumerate(doc.context)])
        opening = next((m.content for m in doc.messages if m.role == "user"), "")
        return replace(conversation, message_count=len(doc.messages), opening=opening)

    def integrity_check(self) -> str:
        """SQLite's verdict on the file: ``"ok"``, or its list of problems (one a line)."""
        with self._transaction("check the database", write=False) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(row[0]) for row in rows)

    # -- internals -----------------------------------------------------------------------

    @contextmanager
    def _transaction(self, action: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """Hold the lock and a transaction (``BEGIN IMMEDIATE`` to write) around a block.

        Commits when the block ends, rolls back when it raises; sqlite3 errors become
        StoreError naming the file and ``action`` ("add a message").
        """
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                    db.execute("COMMIT")
                finally:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
            except sqlite3.Error as error:
                raise _translate(error, self.path, f"could not {action}") from error

    def _migrate(self, found: int) -> None:
        """Bring the file from schema version ``found`` up to ``SCHEMA_VERSION``, one
        migration per transaction."""
        while found < SCHEMA_VERSION:
            with self._transaction("upgrade the database") as db:
                found = _user_version(db)  # another process may have migrated meanwhile
                if found > SCHEMA_VERSION:
                    raise _too_new(self.path, found)
                if found < SCHEMA_VERSION:
                    for statement in _statements(MIGRATIONS[found]):
                        db.execute(statement)
                    found += 1
                    db.execute(f"PRAGMA user_version = {found}")


def _connect(path: Path, timeout: float) -> tuple[sqlite3.Connection, int]:
    """Open the file and set it up, refusing one that is too new or not a database.

    Returns:
        The connection and the file's schema version (0 for a new file).

    The version is read before anything is written: setting WAL mode alone changes the file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"{path}: cannot create the folder {path.parent}: "
                         f"{error.strerror or error}") from error
    try:
        # timeout= is SQLite's busy timeout: how long to wait for another connection's lock
        db = sqlite3.connect(path, timeout=timeout, check_same_thread=False,
                             isolation_level=None)
    except sqlite3.Error as error:
        raise _translate(error, path, "cannot open the conversation database") from error
    try:
        found = _user_version(db)
        if found > SCHEMA_VERSION:
            raise _too_new(path, found)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as error:
        db.close()
        raise _translate(error, path, "cannot open the conversation database") from error
    except BaseException:
        db.close()
        raise
    return db, found


def _user_version(db: sqlite3.Connection) -> int:
    return cast(int, db.execute("PRAGMA user_version").fetchone()[0])


def _too_new(path: Path, found: int) -> StoreVersionError:
    return StoreVersionError(
        f"{path} was written by a newer chinwag (schema version {found}; this chinwag knows "
        f"versions up to {SCHEMA_VERSION}); upgrade chinwag to use it. The file was not changed.",
        found=found, known=SCHEMA_VERSION)


def _translate(error: sqlite3.Error, path: Path, doing: str) -> StoreError:
    """A StoreError naming the file for an sqlite3 error; StoreCorrupt for a damaged file."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return StoreCorrupt(f"{path} is not a SQLite database, or a damaged one ({error}); "
                            "nothing was changed")
    return StoreError(f"{path}: {doing}: {error}")


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into statements (``executescript`` would commit our transaction)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                yield pending
            pending = ""


def _now() -> float:
    return time.time()


def _exists(db: sqlite3.Connection, conversation_id: str) -> bool:
    return db.execute("SELECT 1 FROM conversations WHERE id = ?",
                      (conversation_id,)).fetchone() is not None


def _conversation(db: sqlite3.Connection, conversation_id: str) -> Conversation:
    row = db.execute(_CONVERSATION + " WHERE id = ?", (conversation_id,)).fetchone()
    if row is None:
        raise ConversationNotFound(conversation_id)
    return Conversation(*row)


def _latest(db: sqlite3.Connection, persona: str, user: str,
            scope: str = "") -> Conversation | None:
    row = db.execute(_CONVERSATION + " WHERE persona = ? AND user = ? AND scope = ?"
                     + _NEWEST_FIRST + " LIMIT 1", (persona, user, scope)).fetchone()
    return None if row is None else Conversation(*row)


def _owner_filter(user: str | None, persona: str | None) -> tuple[str, list[str]]:
    """A WHERE clause (or ``""``) and its parameters for the filters given."""
    terms = [(column, value) for column, value in (("user", user), ("persona", persona))
             if value is not None]
    if not terms:
        return "", []
    return (" WHERE " + " AND ".join(f"{column} = ?" for column, _ in terms),
            [value for _, value in terms])


def _insert_conversation(db: sqlite3.Connection, persona: str, user: str | None,
                         conversation_id: str | None = None, *, created_at: float | None = None,
                         updated_at: float | None = None, summary: str = "",
                         summarized_through: int = -1, scope: str = "",
                         title: str = "") -> Conversation:
    now = _now()
    conversation = Conversation(
        id=conversation_id if conversation_id is not None else uuid.uuid4().hex,
        persona=persona, user=user,
        created_at=now if created_at is None else created_at,
        updated_at=now if updated_at is None else updated_at,
        summary=summary, summarized_through=summarized_through, message_count=0,
        scope=scope, title=title)
    db.execute(
        "INSERT INTO conversations (id, persona, user, created_at, updated_at, summary,"
        " summarized_through, scope, title) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (conversation.id, persona, user, conversation.created_at, conversation.updated_at,
         summary, summarized_through, scope, title))
    return conversation


def _append(db: sqlite3.Connection, conversation_id: str, role: str, content: str,
            tokens: int | None, complete: bool, *, model: str | None = None,
            sources: Sequence[dict[str, Any]] = ()) -> StoredMessage:
    """Add a message at the end of a conversation, inside the caller's write transaction."""
    if role not in ROLES:
        raise InvalidParams(f"role must be one of {', '.join(ROLES)}, not {role!r}",
                            param="role")
    now = _now()
    touched = db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?",
                         (now, conversation_id))
    if touched.rowcount == 0:
        raise ConversationNotFound(conversation_id)
    (seq,) = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM messages"
                        " WHERE conversation_id = ?", (conversation_id,)).fetchone()
    cursor = db.execute(
        "INSERT INTO messages (conversation_id, seq, role, content, created_at, tokens, complete,"
        " model, sources) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (conversation_id, seq, role, content, now, tokens, complete, model,
         json.dumps(list(sources)) if sources else None))
    return StoredMessage(cast(int, cursor.lastrowid), conversation_id, seq, cast(Role, role),
                         content, now, tokens, complete, model, tuple(sources))


def _message(row: Iterable[Any]) -> StoredMessage:
    id_, conversation_id, seq, role, content, created_at, tokens, complete, model, sources = row
    return StoredMessage(id_, conversation_id, seq, role, content, created_at, tokens,
                         bool(complete), model, tuple(json.loads(sources)) if sources else ())


# -- the export format -------------------------------------------------------------------


class _ExportedMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Role
    content: str
    created_at: float
    tokens: Annotated[int, Field(ge=0)] | None
    complete: bool
    seq: int | None = None  # informative: messages are stored in the order given
    model: str | None = None
    sources: list[dict[str, Any]] | None = None


class _ExportedContext(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    key: str = Field(min_length=1)
    name: str
    kind: str
    text: str
    tokens: int = Field(ge=0)
    url: str | None = None
    title: str | None = None
    describe: str = ""
    fetched_at: float | None = None


class _Export(BaseModel):
    """An ``export_conversation`` document; strict, since it comes from JSON, not from forms."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal["chinwag.conversation"]
    version: Literal[1]
    id: str = Field(min_length=1)
    persona: str
    user: str | None
    created_at: float
    updated_at: float
    summary: str
    summarized_through: int = Field(ge=-1)
    messages: list[_ExportedMessage]
    context: list[_ExportedContext] = Field(default_factory=list)
    scope: str = ""
    title: str = ""
    heading: str | None = None  # informative: recomputed from the title and the messages

    @model_validator(mode="after")
    def _summary_covers_stored_messages(self) -> _Export:
        if self.summarized_through >= len(self.messages):
            raise ValueError(f"summarized_through is {self.summarized_through} but the "
                             f"conversation has only {len(self.messages)} messages")
        return self


def _parse_export(data: Any, path: Path) -> _Export:
    """Validate an export document.

    Raises:
        StoreError: naming the first problems as ``field.path: what is wrong``.
    """
    if not isinstance(data, dict):
        raise BadExport(f"{path}: cannot import: a conversation export is a JSON object, "
                         f"not {type(data).__name__}")
    try:
        return _Export.model_validate(data)
    except ValidationError as error:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}"
                    for e in error.errors()[:5]]
        raise BadExport(f"{path}: cannot import the conversation: "
                         + "; ".join(problems)) from None
