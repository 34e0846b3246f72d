"""``chinwag knowledge`` in-process (typer's CliRunner) on a real SQLite file: add a file and
standard input, search, list, delete, and the errors people meet."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chinwag.cli.app import app
from chinwag.knowledge.collections import Collections
from chinwag.store import Store
from support.pages import serve, stop

MOON = "The moon orbits the earth once every twenty-seven days and shows phases."
BREAD = "Bread is baked from flour, water, yeast and salt in a hot oven."


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chinwag.db"


def run(db: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, ["knowledge", *args, "--db", str(db)], input=stdin,
                              env={"COLUMNS": "200"})


def test_a_file_and_stdin_are_added_and_found(db: Path, tmp_path: Path) -> None:
    notes = tmp_path / "moon-notes.txt"
    notes.write_text(MOON, encoding="utf-8")
    added = run(db, "add", "sky", str(notes))
    assert added.exit_code == 0, added.output
    assert "Added document 1 ('moon-notes.txt', 1 chunk(s)) to sky." in added.output
    piped = run(db, "add", "sky", "-", stdin=BREAD)
    assert piped.exit_code == 0, piped.output
    titled = run(db, "add", "sky", "-", "--title", "Oven", stdin="Ovens get hot.")
    assert titled.exit_code == 0, titled.output

    with Store(db) as store:
        assert [(d.title, d.url) for d in Collections(store).documents("sky")] == \
            [("moon-notes.txt", None), ("stdin", None), ("Oven", None)]
    found = run(db, "search", "sky", "how is bread baked", "-k", "1")
    assert found.exit_code == 0, found.output
    score, document, title, text = found.output.strip().split("\t")
    assert (document, title, text) == ("2", "stdin", BREAD) and float(score) > 0


def test_list_shows_collections_then_documents(db: Path) -> None:
    run(db, "add", "sky", "-", "--title", "Moon", stdin=MOON)
    run(db, "add", "kitchen", "-", "--title", "Bread", stdin=BREAD)
    collections = run(db, "list")
    assert collections.exit_code == 0, collections.output
    assert "kitchen" in collections.output and "sky" in collections.output
    documents = run(db, "list", "sky")
    assert "Moon" in documents.output and "Bread" not in documents.output
    assert "No documents in empty." in run(db, "list", "empty").output


def test_a_deleted_document_is_no_longer_found(db: Path) -> None:
    run(db, "add", "sky", "-", "--title", "Moon", stdin=MOON)
    deleted = run(db, "delete", "sky", "1")
    assert deleted.exit_code == 0 and "Deleted document 1 from sky." in deleted.output
    assert "Nothing in sky matches." in run(db, "search", "sky", "moon").output
    again = run(db, "delete", "sky", "1")
    assert again.exit_code == 1 and "no document 1 in collection 'sky'" in again.stderr


def test_a_missing_file_is_a_clear_error(db: Path, tmp_path: Path) -> None:
    result = run(db, "add", "sky", str(tmp_path / "nowhere.txt"))
    assert result.exit_code == 1
    assert "cannot read" in result.stderr and "nowhere.txt" in result.stderr
    assert "No such file" in result.stderr
    assert "Traceback" not in result.output


def test_an_invalid_collection_name_is_a_clear_error(db: Path) -> None:
    result = run(db, "add", "bad name", "-", stdin=MOON)
    assert result.exit_code == 1 and "invalid collection name 'bad name'" in result.stderr


def test_text_with_no_words_is_refused(db: Path) -> None:
    result = run(db, "add", "sky", "-", stdin="  \n")
    assert result.exit_code == 1 and "no text" in result.stderr


def test_a_url_is_fetched_with_the_settings_fetch_policy(db: Path) -> None:
    server, pages, thread = serve("127.0.0.1")
    try:
        refused = run(db, "add", "web", pages.url("/page"))
        assert refused.exit_code == 1 and "127.0.0.1" in refused.stderr
        allowed = CliRunner().invoke(
            app, ["knowledge", "add", "web", pages.url("/page"), "--db", str(db)],
            env={"CHINWAG_FETCH_ALLOW_PRIVATE": "127.0.0.1/32"})
    finally:
        stop(server, pages, thread)
    assert allowed.exit_code == 0, allowed.output
    with Store(db) as store:
        [hit] = Collections(store).chunks("web")
    assert (hit.url, hit.text) == (pages.url("/page"), "hello")
