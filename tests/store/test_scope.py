"""A conversation's scope (schema version 3): an NPC's memory of a player, apart from the
persona's own conversations and from other NPCs'; taken-back turns."""

from __future__ import annotations

from pathlib import Path

from chinwag.store import Store
from support.old_store import database_at_version


def test_scopes_keep_conversations_apart(tmp_path: Path) -> None:
    with Store(tmp_path / "c.db") as store:
        own = store.conversation_for("villager", "ada")
        north = store.conversation_for("villager", "ada", scope="npc-north")
        south = store.conversation_for("villager", "ada", scope="npc-south")
        assert len({own.id, north.id, south.id}) == 3
        assert store.conversation_for("villager", "ada", scope="npc-north").id == north.id
        assert store.latest_conversation("villager", "ada").id == own.id  # type: ignore[union-attr]
        assert store.get_conversation(north.id).scope == "npc-north"
        assert own.scope == ""


def test_a_version_2_file_is_upgraded_and_keeps_its_conversations(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with database_at_version(path, 2) as raw:
        raw.execute("INSERT INTO conversations (id, persona, user, created_at, updated_at)"
                    " VALUES ('old', 'villager', 'ada', 1, 1)")
    with Store(path) as store:
        assert store.get_conversation("old").scope == ""
        assert store.conversation_for("villager", "ada").id == "old"
        assert store.conversation_for("villager", "ada", scope="npc").id != "old"


def test_export_and_import_keep_the_scope(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        conversation = store.conversation_for("villager", "ada", scope="npc-north")
        store.add_message(conversation.id, "system", "Bob: hi")
        exported = store.export_conversation(conversation.id)
    assert exported["scope"] == "npc-north"
    with Store(tmp_path / "b.db") as other:
        imported = other.import_conversation(exported)
        assert imported.scope == "npc-north"
        assert other.conversation_for("villager", "ada", scope="npc-north").id == imported.id
        older = {k: v for k, v in exported.items() if k != "scope"}
        assert other.import_conversation(older).scope == ""


def test_delete_messages_from_takes_a_turn_back(tmp_path: Path) -> None:
    with Store(tmp_path / "c.db") as store:
        cid = store.create_conversation("villager", "ada").id
        for role, text in (("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "")):
            store.add_message(cid, role, text)
        assert store.delete_messages_from(cid, 2) == 2
        assert [m.content for m in store.messages(cid)] == ["a", "b"]
        assert store.add_message(cid, "user", "d").seq == 2
