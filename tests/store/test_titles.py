"""Schema version 4: a conversation's title (its first message until renamed), the model and
sources of each reply, truncation dropping a summary that covered what went."""

from __future__ import annotations

from pathlib import Path

import pytest

from chinwag.errors import ConversationNotFound
from chinwag.store import Store
from chinwag.store.database import TITLE_CHARS
from support.old_store import database_at_version


def test_the_title_is_the_first_user_message_until_renamed(tmp_path: Path) -> None:
    with Store(tmp_path / "t.db") as store:
        conversation = store.create_conversation("villager", "ada")
        assert store.get_conversation(conversation.id).heading == ""
        long = "Where   is the mill?\nAnd " + "why " * 30
        asked = store.begin_turn(conversation.id, long)
        store.finish_turn(asked, "North.", model="smollm2",
                          sources=[{"name": "map", "url": "http://127.0.0.1/map"}])
        found = store.get_conversation(conversation.id)
        assert found.heading.startswith("Where is the mill? And why")
        assert len(found.heading) <= TITLE_CHARS and found.heading.endswith("…")
        renamed = store.rename_conversation(conversation.id, "The mill")
        assert renamed.heading == "The mill" and renamed.title == "The mill"
        assert store.list_conversations(user="ada")[0].heading == "The mill"
        assert store.rename_conversation(conversation.id, "").heading.startswith("Where")
        reply = store.messages(conversation.id)[1]
        assert reply.model == "smollm2"
        assert reply.sources == ({"name": "map", "url": "http://127.0.0.1/map"},)
        with pytest.raises(ConversationNotFound):
            store.rename_conversation("nope", "x")


def test_export_and_import_keep_titles_models_and_sources(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        cid = store.create_conversation("villager", "ada").id
        asked = store.begin_turn(cid, "Hello")
        store.finish_turn(asked, "Hi!", model="m1", sources=[{"name": "s"}])
        store.rename_conversation(cid, "Greetings")
        exported = store.export_conversation(cid)
    assert exported["title"] == "Greetings" and exported["heading"] == "Greetings"
    assert exported["messages"][1]["model"] == "m1"
    assert exported["messages"][1]["sources"] == [{"name": "s"}]
    assert [m["seq"] for m in exported["messages"]] == [0, 1]
    with Store(tmp_path / "b.db") as other:
        imported = other.import_conversation(exported)
        assert imported.heading == "Greetings"
        assert other.messages(imported.id)[1].model == "m1"
        older = {k: v for k, v in exported.items() if k not in ("title", "heading")}
        older["messages"] = [{k: v for k, v in m.items() if k not in ("seq", "model", "sources")}
                             for m in exported["messages"]]
        again = other.import_conversation(older)
        assert again.heading == "Hello" and other.messages(again.id)[1].model is None


def test_truncating_drops_a_summary_that_covered_what_went(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        cid = store.create_conversation("villager", "ada").id
        for role, text in (("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")):
            store.add_message(cid, role, text)
        store.set_summary(cid, "a and b were said", 1)
        store.delete_messages_from(cid, 2)
        assert store.get_conversation(cid).summary == "a and b were said"
        store.delete_messages_from(cid, 1)
        found = store.get_conversation(cid)
        assert found.summary == "" and found.summarized_through == -1
        assert found.message_count == 1


def test_a_version_3_file_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with database_at_version(path, 3) as raw:
        raw.execute("INSERT INTO conversations (id, persona, user, created_at, updated_at)"
                    " VALUES ('old', 'villager', 'ada', 1, 1)")
        raw.execute("INSERT INTO messages (conversation_id, seq, role, content, created_at,"
                    " complete) VALUES ('old', 0, 'user', 'Hello there', 1, 1)")
    with Store(path) as store:
        found = store.get_conversation("old")
        assert found.title == "" and found.heading == "Hello there"
        assert store.messages("old")[0].model is None
