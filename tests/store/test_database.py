"""The conversation database on real SQLite files: resuming, turns, persistence, deletion,
facts, export/import, refusing files it must not touch, and many writers at once."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from chinwag.errors import (
    ConversationNotFound,
    InvalidParams,
    StoreCorrupt,
    StoreError,
    StoreVersionError,
)
from chinwag.store import SCHEMA_VERSION, Store, default_db_path
from chinwag.store import database as database_module
from chinwag.types import ContextPiece, Message


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "chinwag.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as opened:
        yield opened


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Freeze the store's clock; call the fixture's value to move it (unix seconds)."""
    now = [1_700_000_000.0]
    monkeypatch.setattr(database_module, "_now", lambda: now[0])

    def set_time(t: float) -> None:
        now[0] = t

    return set_time


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw_sqlite(path: Path) -> closing[sqlite3.Connection]:
    """A plain sqlite3 connection to the file, in autocommit mode, closed after the block."""
    return closing(sqlite3.connect(path, isolation_level=None))


def raw_count(path: Path, sql: str, *params: Any) -> int:
    with raw_sqlite(path) as db:
        return int(db.execute(sql, params).fetchone()[0])


def talk(store: Store, conversation_id: str, turns: int) -> None:
    for i in range(turns):
        asked = store.begin_turn(conversation_id, f"question {i}", tokens=3)
        store.finish_turn(asked, f"answer {i}", tokens=4)


# -- creating and resuming conversations -------------------------------------------------


def test_conversation_for_resumes_the_same_conversation(store: Store) -> None:
    first = store.conversation_for("villager", "alice")
    store.add_message(first.id, "user", "hello")
    again = store.conversation_for("villager", "alice")
    assert again.id == first.id
    assert again.message_count == 1
    assert len(store.list_conversations()) == 1


def test_conversation_for_another_user_or_persona_is_another_conversation(store: Store) -> None:
    alice = store.conversation_for("villager", "alice")
    bob = store.conversation_for("villager", "bob")
    alice_with_guard = store.conversation_for("guard", "alice")
    assert len({alice.id, bob.id, alice_with_guard.id}) == 3
    assert (bob.persona, bob.user) == ("villager", "bob")


def test_new_conversation_has_a_uuid4_hex_id_and_no_summary(store: Store) -> None:
    conversation = store.create_conversation("villager", None)
    assert len(conversation.id) == 32 and int(conversation.id, 16) >= 0
    assert (conversation.summary, conversation.summarized_through) == ("", -1)
    assert conversation.message_count == 0
    assert conversation.user is None
    assert store.get_conversation(conversation.id) == conversation


def test_create_conversation_with_explicit_id(store: Store) -> None:
    made = store.create_conversation("villager", "alice", conversation_id="chat-1")
    assert made.id == "chat-1"
    assert store.get_conversation("chat-1").persona == "villager"


def test_create_conversation_with_a_taken_id_raises(store: Store) -> None:
    store.create_conversation("villager", "alice", conversation_id="chat-1")
    with pytest.raises(StoreError, match=r"chat-1.*already exists"):
        store.create_conversation("guard", "bob", conversation_id="chat-1")
    assert store.get_conversation("chat-1").persona == "villager"


def test_latest_conversation_is_the_most_recently_updated(
        store: Store, clock: Callable[[float], None]) -> None:
    clock(100.0)
    older = store.create_conversation("villager", "alice")
    clock(200.0)
    newer = store.create_conversation("villager", "alice")
    assert store.latest_conversation("villager", "alice") == newer
    clock(300.0)
    store.add_message(older.id, "user", "back to the first one")
    latest = store.latest_conversation("villager", "alice")
    assert latest is not None and latest.id == older.id
    assert latest.updated_at == 300.0
    assert store.conversation_for("villager", "alice").id == older.id
    assert store.latest_conversation("villager", "carol") is None


def test_list_conversations_filters_and_puts_newest_updated_first(
        store: Store, clock: Callable[[float], None]) -> None:
    made = []
    for t, (persona, user) in enumerate([("villager", "alice"), ("guard", "alice"),
                                         ("villager", "bob")]):
        clock(100.0 + t)
        made.append(store.create_conversation(persona, user))
    assert [c.id for c in store.list_conversations()] == [c.id for c in reversed(made)]
    assert [c.id for c in store.list_conversations(user="alice")] == [made[1].id, made[0].id]
    assert [c.id for c in store.list_conversations(persona="villager")] == [made[2].id,
                                                                          made[0].id]
    assert [c.id for c in store.list_conversations(user="bob", persona="guard")] == []


# -- turns -------------------------------------------------------------------------------


def test_finish_turn_marks_both_messages_complete_in_seq_order_with_tokens(store: Store) -> None:
    conversation = store.create_conversation("villager", "alice")
    asked = store.begin_turn(conversation.id, "Hello!", tokens=3)
    assert (asked.seq, asked.role, asked.complete, asked.tokens) == (0, "user", False, 3)
    assert store.messages(conversation.id)[0].complete is False

    reply = store.finish_turn(asked, "Well met!", tokens=5)
    assert (reply.seq, reply.role, reply.complete, reply.tokens) == (1, "assistant", True, 5)

    stored = store.messages(conversation.id)
    assert [(m.seq, m.role, m.content, m.tokens, m.complete) for m in stored] == [
        (0, "user", "Hello!", 3, True),
        (1, "assistant", "Well met!", 5, True),
    ]
    assert stored[1] == reply
    assert store.get_conversation(conversation.id).message_count == 2


def test_finish_turn_cut_short_leaves_both_messages_incomplete(store: Store) -> None:
    conversation = store.create_conversation("villager", "alice")
    asked = store.begin_turn(conversation.id, "Tell me a long story")
    store.finish_turn(asked, "Once upon a", complete=False)
    assert [m.complete for m in store.messages(conversation.id)] == [False, False]


def test_finish_turn_updates_updated_at(store: Store, clock: Callable[[float], None]) -> None:
    clock(100.0)
    conversation = store.create_conversation("villager", "alice")
    asked = store.begin_turn(conversation.id, "Hello!")
    clock(150.0)
    reply = store.finish_turn(asked, "Well met!")
    assert reply.created_at == 150.0
    assert store.get_conversation(conversation.id).updated_at == 150.0


def test_seq_continues_after_add_message(store: Store) -> None:
    conversation = store.create_conversation("villager", "alice")
    store.add_message(conversation.id, "system", "You are Bertha.")
    talk(store, conversation.id, 2)
    assert [m.seq for m in store.messages(conversation.id)] == [0, 1, 2, 3, 4]


def test_begun_but_unfinished_turn_stays_incomplete_after_reopening(db_path: Path) -> None:
    with Store(db_path) as store:
        conversation = store.create_conversation("villager", "alice")
        talk(store, conversation.id, 1)
        store.begin_turn(conversation.id, "Are you still there?")
        # the process "dies" here: no finish_turn
    with Store(db_path) as store:
        stored = store.messages(conversation.id)
    assert [(m.role, m.complete) for m in stored] == [
        ("user", True), ("assistant", True), ("user", False)]
    assert stored[-1].content == "Are you still there?"


def test_add_message_with_an_unknown_role_raises_and_stores_nothing(store: Store) -> None:
    conversation = store.create_conversation("villager", "alice")
    with pytest.raises(InvalidParams, match="role"):
        store.add_message(conversation.id, "narrator", "It was a dark night.")
    assert store.messages(conversation.id) == []


def test_stored_message_to_message(store: Store) -> None:
    conversation = store.create_conversation("villager", "alice")
    stored = store.add_message(conversation.id, "assistant", "Well met!")
    assert stored.to_message() == Message("assistant", "Well met!")


def test_set_summary_persists(db_path: Path) -> None:
    with Store(db_path) as store:
        conversation = store.create_conversation("villager", "alice")
        talk(store, conversation.id, 2)
        store.set_summary(conversation.id, "Alice asked two questions.", 1)
    with Store(db_path) as store:
        reopened = store.get_conversation(conversation.id)
    assert (reopened.summary, reopened.summarized_through) == ("Alice asked two questions.", 1)


# -- the file ----------------------------------------------------------------------------


def test_everything_persists_after_reopening_in_wal_mode(db_path: Path) -> None:
    with Store(db_path) as store:
        conversation = store.create_conversation("villager", "alice")
        talk(store, conversation.id, 3)
        store.add_fact("villager", "alice", "likes apples")
        before = store.messages(conversation.id)
        before_conversation = store.get_conversation(conversation.id)
    with Store(db_path) as store:
        assert store.messages(conversation.id) == before
        assert store.get_conversation(conversation.id) == before_conversation
        assert store.facts("villager", "alice") == ["likes apples"]
        assert store.integrity_check() == "ok"
    with raw_sqlite(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_store_creates_missing_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "chinwag.db"
    with Store(str(path)) as store:
        assert store.path == path
    assert path.is_file()


def test_path_whose_parent_is_a_file_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("I am a file")
    path = tmp_path / "not-a-folder" / "chinwag.db"
    with pytest.raises(StoreError, match="not-a-folder") as caught:
        Store(path)
    assert type(caught.value) is StoreError
    assert (tmp_path / "not-a-folder").read_text() == "I am a file"


def test_database_written_by_a_newer_chinwag_is_refused_and_untouched(db_path: Path) -> None:
    with Store(db_path) as store:
        talk(store, store.create_conversation("villager", "alice").id, 2)
    with raw_sqlite(db_path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = sha256(db_path)

    with pytest.raises(StoreVersionError, match="newer chinwag") as caught:
        Store(db_path)

    assert caught.value.found == SCHEMA_VERSION + 1
    assert caught.value.known == SCHEMA_VERSION
    assert str(SCHEMA_VERSION + 1) in str(caught.value) and str(SCHEMA_VERSION) in str(
        caught.value)
    assert sha256(db_path) == before


def test_text_file_is_refused_as_corrupt_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 10)
    before = sha256(path)
    with pytest.raises(StoreCorrupt, match="nothing was changed") as caught:
        Store(path)
    assert str(path) in str(caught.value)
    assert sha256(path) == before


def test_random_bytes_are_refused_as_corrupt_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "noise.db"
    path.write_bytes(os.urandom(8192))
    before = sha256(path)
    with pytest.raises(StoreCorrupt, match="not a SQLite database"):
        Store(path)
    assert sha256(path) == before


def test_sqlite_errors_are_wrapped_in_store_error_naming_the_file(db_path: Path) -> None:
    store = Store(db_path)
    store.close()
    store.close()  # harmless
    with pytest.raises(StoreError, match=re.escape(str(db_path))) as caught:
        store.list_conversations()
    assert isinstance(caught.value.__cause__, sqlite3.Error)


def test_default_db_path_follows_xdg_data_home(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "chinwag" / "chinwag.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / ".local" / "share" / "chinwag" / "chinwag.db"


# -- deleting ----------------------------------------------------------------------------


def test_delete_conversation_deletes_its_messages(store: Store, db_path: Path) -> None:
    gone = store.create_conversation("villager", "alice")
    kept = store.create_conversation("villager", "bob")
    talk(store, gone.id, 2)
    talk(store, kept.id, 1)

    store.delete_conversation(gone.id)

    with pytest.raises(ConversationNotFound):
        store.get_conversation(gone.id)
    count = "SELECT COUNT(*) FROM messages WHERE conversation_id = ?"
    assert raw_count(db_path, count, gone.id) == 0
    assert raw_count(db_path, count, kept.id) == 2


def test_delete_user_conversations_leaves_other_users_untouched(
        store: Store, db_path: Path) -> None:
    for persona in ("villager", "guard"):
        talk(store, store.create_conversation(persona, "alice").id, 1)
    bob = store.create_conversation("villager", "bob")
    talk(store, bob.id, 1)

    assert store.delete_user_conversations("alice") == 2

    assert store.list_conversations(user="alice") == []
    assert [c.id for c in store.list_conversations()] == [bob.id]
    assert raw_count(db_path, "SELECT COUNT(*) FROM messages") == 2
    assert store.delete_user_conversations("nobody") == 0


def test_delete_user_conversations_with_one_persona(store: Store) -> None:
    store.create_conversation("villager", "alice")
    guard = store.create_conversation("guard", "alice")
    assert store.delete_user_conversations("alice", persona="villager") == 1
    assert [c.id for c in store.list_conversations(user="alice")] == [guard.id]


# -- facts -------------------------------------------------------------------------------


def test_facts_are_added_listed_oldest_first_and_cleared(store: Store) -> None:
    first = store.add_fact("villager", "alice", "likes apples")
    second = store.add_fact("villager", "alice", "has a dog named Rex")
    store.add_fact("villager", "bob", "is a blacksmith")
    store.add_fact("guard", "alice", "owes the guard a coin")
    assert second > first

    assert store.facts("villager", "alice") == ["likes apples", "has a dog named Rex"]
    assert store.clear_facts("villager", "alice") == 2
    assert store.facts("villager", "alice") == []
    assert store.facts("villager", "bob") == ["is a blacksmith"]
    assert store.facts("guard", "alice") == ["owes the guard a coin"]
    assert store.clear_facts("villager", "alice") == 0


# -- export and import -------------------------------------------------------------------


def exported(store: Store) -> dict[str, Any]:
    conversation = store.create_conversation("villager", "alice")
    talk(store, conversation.id, 2)
    store.begin_turn(conversation.id, "unanswered")
    store.set_summary(conversation.id, "They talked.", 1)
    store.put_context(conversation.id, ContextPiece(
        "http://limbo.test/goats", "http://limbo.test/goats", "page", "Moss is a goat.", 6,
        url="http://limbo.test/goats", title="Goats", fetched_at=1700000000.0))
    store.put_context(conversation.id, ContextPiece("context:ab", "context", "text",
                                                    "The door is blue.", 5))
    return store.export_conversation(conversation.id)


def test_export_then_import_into_another_file_gives_identical_messages(
        store: Store, tmp_path: Path) -> None:
    document = json.loads(json.dumps(exported(store)))  # as if written to a file and read back
    original = store.get_conversation(document["id"])
    assert document["format"] == "chinwag.conversation" and document["version"] == 1

    with Store(tmp_path / "other.db") as other:
        imported = other.import_conversation(document)
        assert imported == original
        assert other.get_conversation(imported.id) == original

        def shape(messages: list[Any]) -> list[tuple[Any, ...]]:
            return [(m.seq, m.role, m.content, m.created_at, m.tokens, m.complete)
                    for m in messages]

        assert shape(other.messages(imported.id)) == shape(store.messages(original.id))
        assert other.context(imported.id) == store.context(original.id)
        assert [c["key"] for c in document["context"]] == ["http://limbo.test/goats",
                                                           "context:ab"]
        assert other.export_conversation(imported.id) == document


def test_an_export_without_context_still_imports(store: Store) -> None:
    document = exported(store)
    del document["context"]
    imported = store.import_conversation(document)
    assert store.context(imported.id) == []


def test_context_is_replaced_by_key_dropped_and_goes_with_its_conversation(
        store: Store) -> None:
    conversation = store.create_conversation("villager", "ann")
    store.put_context(conversation.id, ContextPiece("k", "k", "page", "old", 1))
    store.put_context(conversation.id, ContextPiece("k", "k", "page", "new", 1))
    assert [c.text for c in store.context(conversation.id)] == ["new"]
    assert store.drop_context(conversation.id, "k") and not store.drop_context(
        conversation.id, "k")
    store.put_context(conversation.id, ContextPiece("k", "k", "page", "x", 1))
    store.delete_conversation(conversation.id)
    with pytest.raises(ConversationNotFound):
        store.put_context(conversation.id, ContextPiece("k", "k", "page", "x", 1))


def test_import_into_the_same_store_gets_a_new_id(store: Store) -> None:
    document = exported(store)
    imported = store.import_conversation(document)
    assert imported.id != document["id"]
    assert imported.message_count == len(document["messages"]) == 5
    assert [m.content for m in store.messages(imported.id)] == [
        m["content"] for m in document["messages"]]
    assert len(store.list_conversations()) == 2


def assert_import_refused(store: Store, db_path: Path, document: Any, *names: str) -> None:
    """Importing ``document`` raises StoreError naming each of ``names``, and writes nothing."""
    conversations = raw_count(db_path, "SELECT COUNT(*) FROM conversations")
    messages = raw_count(db_path, "SELECT COUNT(*) FROM messages")
    with pytest.raises(StoreError) as caught:
        store.import_conversation(document)
    for name in names:
        assert name in str(caught.value)
    assert raw_count(db_path, "SELECT COUNT(*) FROM conversations") == conversations
    assert raw_count(db_path, "SELECT COUNT(*) FROM messages") == messages


def test_import_without_a_required_field_is_refused(store: Store, db_path: Path) -> None:
    document = exported(store)
    del document["persona"]
    assert_import_refused(store, db_path, document, "persona", "required")


def test_import_with_a_message_missing_its_content_is_refused(
        store: Store, db_path: Path) -> None:
    document = exported(store)
    del document["messages"][2]["content"]
    assert_import_refused(store, db_path, document, "messages.2.content")


def test_import_with_a_bad_role_is_refused(store: Store, db_path: Path) -> None:
    document = exported(store)
    document["messages"][3]["role"] = "narrator"
    assert_import_refused(store, db_path, document, "messages.3.role", "'assistant'")


def test_import_with_a_wrong_type_is_refused(store: Store, db_path: Path) -> None:
    document = exported(store)
    document["messages"][0]["created_at"] = "yesterday"
    document["messages"][1]["complete"] = "yes"
    assert_import_refused(store, db_path, document, "messages.0.created_at",
                          "messages.1.complete")


def test_import_of_something_not_a_dict_is_refused(store: Store, db_path: Path) -> None:
    assert_import_refused(store, db_path, [exported(store)], "JSON object", "list")


def test_import_with_an_unknown_field_is_refused(store: Store, db_path: Path) -> None:
    document = exported(store)
    document["messages"][0]["mood"] = "cheerful"
    assert_import_refused(store, db_path, document, "messages.0.mood")


def test_import_of_another_format_is_refused(store: Store, db_path: Path) -> None:
    document = exported(store)
    document["format"] = "someone.else"
    assert_import_refused(store, db_path, document, "format")


def test_import_with_a_summary_past_the_last_message_is_refused(
        store: Store, db_path: Path) -> None:
    document = exported(store)
    document["summarized_through"] = 5
    assert_import_refused(store, db_path, document, "summarized_through")


def test_import_that_fails_halfway_writes_nothing(store: Store, db_path: Path) -> None:
    document = exported(store)
    document["id"] = "fresh-id"
    with raw_sqlite(db_path) as raw:  # make the third message's insert fail
        raw.execute("CREATE TRIGGER no_third BEFORE INSERT ON messages WHEN NEW.seq = 2"
                    " BEGIN SELECT RAISE(ABORT, 'third message refused'); END")
    assert_import_refused(store, db_path, document, "third message refused")
    with pytest.raises(ConversationNotFound):
        store.get_conversation("fresh-id")


# -- unknown ids -------------------------------------------------------------------------


@pytest.mark.parametrize("use", [
    pytest.param(lambda s: s.get_conversation("nope"), id="get_conversation"),
    pytest.param(lambda s: s.messages("nope"), id="messages"),
    pytest.param(lambda s: s.delete_conversation("nope"), id="delete_conversation"),
    pytest.param(lambda s: s.add_message("nope", "user", "hi"), id="add_message"),
    pytest.param(lambda s: s.begin_turn("nope", "hi"), id="begin_turn"),
    pytest.param(lambda s: s.set_summary("nope", "x", 0), id="set_summary"),
    pytest.param(lambda s: s.export_conversation("nope"), id="export_conversation"),
])
def test_unknown_conversation_id_raises_conversation_not_found(
        store: Store, use: Callable[[Store], object]) -> None:
    with pytest.raises(ConversationNotFound) as caught:
        use(store)
    assert caught.value.conversation_id == "nope"


def test_finish_turn_after_the_conversation_was_deleted_raises(store: Store) -> None:
    conversation = store.create_conversation("villager", "alice")
    asked = store.begin_turn(conversation.id, "Hello?")
    store.delete_conversation(conversation.id)
    with pytest.raises(ConversationNotFound):
        store.finish_turn(asked, "Well met!")


# -- many writers ------------------------------------------------------------------------

WRITERS = 50
TURNS = 20


def run_writers(work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(i)`` for i in range(WRITERS), each in its own thread, started together."""
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def writer(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def check_all_written(store: Store) -> None:
    conversations = store.list_conversations()
    assert len(conversations) == WRITERS
    assert sum(c.message_count for c in conversations) == WRITERS * TURNS * 2
    for conversation in conversations:
        stored = store.messages(conversation.id)
        assert [m.seq for m in stored] == list(range(TURNS * 2))
        assert all(m.complete for m in stored)
    assert store.integrity_check() == "ok"


def test_fifty_writers_each_with_their_own_store_on_one_file(db_path: Path) -> None:
    def work(i: int) -> None:
        with Store(db_path) as store:
            talk(store, store.conversation_for("villager", f"user{i}").id, TURNS)

    assert run_writers(work) == []
    with Store(db_path) as store:
        check_all_written(store)


def test_fifty_threads_sharing_one_store(store: Store) -> None:
    def work(i: int) -> None:
        talk(store, store.conversation_for("villager", f"user{i}").id, TURNS)

    assert run_writers(work) == []
    check_all_written(store)
