"""The ``chinwag`` command as people run it: a real subprocess, piped input, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chinwag.cli.session import parse_value
from chinwag.errors import InvalidParams
from support.pages import PageServer


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CHINWAG_", "LLM_"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "chinwag", *args], input=stdin, text=True,
                          capture_output=True, timeout=timeout, env=full_env)


@pytest.mark.slow
def test_piped_chat_answers_one_line_per_message() -> None:
    result = run("chat", "--persona", "villager", "--temperature", "0",
                 stdin="Hello!\nWhat is this place?\n")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 2, result.stdout
    assert all("Traveller:" not in line for line in lines)


@pytest.mark.slow
def test_piped_chat_handles_slash_commands() -> None:
    result = run("chat", stdin="/set temperature 0\n/show\nHi\n/bye\nnever sent\n")
    assert result.returncode == 0, result.stderr
    assert "Set temperature to 0.0." in result.stdout
    assert "temperature=0.0" in result.stdout


@pytest.mark.slow
def test_complete_streams_a_continuation() -> None:
    result = run("complete", "The capital of France is", "--temperature", "0",
                 "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) > 0


@pytest.mark.slow
def test_models_shows_the_model() -> None:
    result = run("models")
    assert result.returncode == 0, result.stderr
    for word in ("gemma-3-270m-q4_k_m", "parameters", "268M", "n_ctx", "transcript"):
        assert word in result.stdout


def test_personas_lists_builtins_and_user_ones(tmp_path: Path) -> None:
    (tmp_path / "my-villager.yaml").write_text("name: villager\ncharacter: Gertrude\n")
    (tmp_path / "gus.yaml").write_text("description: a goose\n")
    result = run("personas", "--personas", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in ("assistant", "villager", "pogi", "gus", "Gertrude", "built-in"):
        assert name in result.stdout
    villager_row = next(line for line in result.stdout.splitlines() if "villager" in line)
    assert "built-in" not in villager_row  # the user file overrides, and the table says so


def test_missing_model_file_is_one_clear_error(tmp_path: Path) -> None:
    result = run("chat", "--model", str(tmp_path / "nope.gguf"), stdin="hi\n")
    assert result.returncode == 1
    assert "model file not found" in result.stderr and "Traceback" not in result.stderr


def test_model_from_llm_model_file_variable(tmp_path: Path) -> None:
    result = run("models", env={"LLM_MODEL_FILE": str(tmp_path / "env.gguf")})
    assert result.returncode == 1 and "env.gguf" in result.stderr


def test_unknown_persona_lists_known_ones() -> None:
    result = run("chat", "--persona", "wizard", stdin="hi\n")
    assert result.returncode == 1
    assert "unknown persona 'wizard'" in result.stderr and "villager" in result.stderr


def test_broken_persona_file_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: bad\nexamples: [\n")
    result = run("chat", "--personas", str(tmp_path), "--persona", "bad", stdin="hi\n")
    assert result.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:" in result.stderr and "Traceback" not in result.stderr


def test_invalid_sampling_flag_is_rejected_before_loading() -> None:
    result = run("complete", "hi", "--top-p", "7")
    assert result.returncode == 1 and "top_p" in result.stderr


def test_parse_value_types() -> None:
    assert parse_value("temperature", "0") == 0.0
    assert parse_value("max_tokens", "12") == 12
    assert parse_value("seed", "none") is None
    assert parse_value("stop", r"'\n' END") == ("\n", "END")
    with pytest.raises(InvalidParams, match="integer"):
        parse_value("top_k", "many")
    with pytest.raises(InvalidParams, match="unknown"):
        parse_value("tempreture", "1")


@pytest.mark.slow
def test_message_longer_than_context_is_reported_and_the_chat_goes_on() -> None:
    long_message = "word " * 1200
    result = run("chat", "--n-ctx", "512", "--temperature", "0",
                 stdin=f"{long_message}\nHello!\n")
    assert result.returncode == 0, result.stderr
    assert "error:" in result.stderr and "512" in result.stderr
    assert "tokens" in result.stderr
    answers = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(answers) == 1  # the second message was answered


def test_corrupt_database_is_one_clear_error_and_left_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    db.write_text("these are my notes, not a database\n")
    for args in (("conversations",), ("chat", "--persona", "villager")):
        result = run(*args, "--db", str(db), stdin="Hello\n")
        assert result.returncode == 1
        assert str(db) in " ".join(result.stderr.split()) or "chat.db" in result.stderr
        assert "Traceback" not in result.stderr
    assert db.read_text() == "these are my notes, not a database\n"


def test_database_from_a_newer_chinwag_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from chinwag.store import SCHEMA_VERSION, Store

    db = tmp_path / "chat.db"
    Store(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    result = run("conversations", "--db", str(db))
    assert result.returncode == 1 and "newer" in result.stderr, result.stderr


def test_conversations_import_export_and_delete(tmp_path: Path) -> None:
    from chinwag.store import Store

    db = tmp_path / "chat.db"
    with Store(db) as store:
        kept = store.conversation_for("villager", "alice")
        store.finish_turn(store.begin_turn(kept.id, "Hello"), "Well met!")
        gone = store.conversation_for("villager", "bob")
    exported = tmp_path / "alice.json"
    assert run("conversations", "export", kept.id, str(exported), "--db", str(db)
               ).returncode == 0
    imported = run("conversations", "import", str(exported), "--db", str(tmp_path / "b.db"))
    assert imported.returncode == 0 and "Imported 2 messages" in imported.stdout
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "chinwag.conversation", "messages": [')
    failed = run("conversations", "import", str(broken), "--db", str(db))
    assert failed.returncode == 1 and "not JSON" in failed.stderr
    assert run("conversations", "delete", "--user", "bob", "--db", str(db)).returncode == 0
    with Store(db) as store:
        assert [c.id for c in store.list_conversations()] == [kept.id]
        assert gone.id not in {c.id for c in store.list_conversations()}
    assert run("conversations", "delete", "--db", str(db)).returncode != 0


def test_session_pins_facts_shows_history_and_forgets(tmp_path: Path) -> None:
    import io

    from chinwag.backends.scripted import ScriptedBackend
    from chinwag.chat import Chatbot, get_persona
    from chinwag.cli.session import ChatSession
    from chinwag.store import Store

    backend = ScriptedBackend(["Well met!"])
    out = io.StringIO()
    with Store(tmp_path / "chat.db") as store:
        bot = Chatbot(backend, get_persona("villager"), store=store,
                      conversation=store.conversation_for("villager", "ann"))
        session = ChatSession(backend, bot, None, out)
        session.command("/pin Ann is a blacksmith.")
        "".join(session.ask("Hello"))
        assert "Ann is a blacksmith." in backend.requests[0].prompt
        session.command("/history")
        assert "Traveller: Hello\nBertha: Well met!" in out.getvalue()
        old = bot.conversation_id
        session.command("/forget")
        assert store.list_conversations(user="ann")[0].id != old
        session.command("/unpin")
        assert store.facts("villager", "ann") == []


def test_export_to_a_path_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    import io

    from chinwag.backends.scripted import ScriptedBackend
    from chinwag.chat import Chatbot, get_persona
    from chinwag.cli.session import ChatSession
    from chinwag.store import Store

    db = tmp_path / "chat.db"
    nowhere = tmp_path / "missing-folder" / "out.json"
    backend = ScriptedBackend(["Hi!"])
    out = io.StringIO()
    with Store(db) as store:
        bot = Chatbot(backend, get_persona("villager"), store=store,
                      conversation=store.conversation_for("villager", "ann"))
        session = ChatSession(backend, bot, None, out)
        "".join(session.ask("Hello"))
        session.command(f"/export {nowhere}")
        cid = bot.conversation_id or ""
    assert f"error: cannot write {nowhere}" in out.getvalue()
    result = run("conversations", "export", cid, str(nowhere), "--db", str(db))
    assert result.returncode == 1 and "cannot write" in result.stderr
    assert "Traceback" not in result.stderr and not nowhere.exists()


@pytest.mark.slow
def test_piped_chat_reads_a_page_and_says_so(tmp_path: Path, pages: PageServer) -> None:
    result = run("chat", "--persona", "villager", "--temperature", "0", "--max-tokens", "12",
                 "--db", str(tmp_path / "chinwag.db"), "--fetch-allow-private", "127.0.0.1/32",
                 stdin=f"{pages.url('/article')} How old is Moss?\nAnd her name?\n")
    assert result.returncode == 0, result.stderr
    shown = [line for line in result.stderr.splitlines() if line.startswith("sources:")]
    assert shown[0].startswith(f"sources: Goats of Limbo ({pages.url('/article')}), ")
    assert len(shown) == 2  # the page stays with the conversation for the next question
    assert len(pages.requests_to("/article")) == 1
