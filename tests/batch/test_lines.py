"""Reading a batch file: OpenAI's batch lines, the short form, seeds from ids, and every
kind of bad line reported without stopping the others."""

from __future__ import annotations

import json
from pathlib import Path

from chinwag.batch import read_batch
from chinwag.batch.lines import seed_for


def write(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_good_lines_of_both_forms(tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.jsonl",
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "assistant", "messages": [{"role": "user", "content": "hi"}]}},
        "",
        {"custom_id": "b", "persona": "villager", "prompt": "Who are you?",
         "schema": {"type": "object"}, "max_tokens": 20},
        {"custom_id": "c", "url": "/v1/embeddings", "body": {"input": ["x"]}},
        {"custom_id": "d", "url": "/v1/completions", "body": {"prompt": "x", "seed": 7}})
    lines, errors = read_batch(path)
    assert errors == []
    assert [(x.custom_id, x.line, x.url) for x in lines] == [
        ("a", 1, "/v1/chat/completions"), ("b", 3, "/v1/chat/completions"),
        ("c", 4, "/v1/embeddings"), ("d", 5, "/v1/completions")]
    assert lines[0].body["seed"] == seed_for("a")
    assert lines[1].body == {
        "model": "villager", "messages": [{"role": "user", "content": "Who are you?"}],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "output", "schema": {"type": "object"}}},
        "max_tokens": 20, "seed": seed_for("b")}
    assert "seed" not in lines[2].body and lines[3].body["seed"] == 7


def test_seeds_come_from_the_id_alone() -> None:
    assert seed_for("ticket-1") == seed_for("ticket-1") != seed_for("ticket-2")
    assert 0 <= seed_for("x") < 2**31


def test_each_bad_line_is_an_error_and_the_rest_run(tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.jsonl",
        "{not json",
        {"method": "POST", "url": "/v1/completions", "body": {}},
        {"custom_id": "get", "method": "GET", "url": "/v1/completions", "body": {}},
        {"custom_id": "where", "url": "/v1/batches", "body": {}},
        {"custom_id": "nobody", "url": "/v1/completions", "body": "text"},
        {"custom_id": "short", "persona": "assistant"},
        {"custom_id": "ok", "url": "/v1/completions", "body": {"prompt": "x"}},
        {"custom_id": "ok", "url": "/v1/completions", "body": {"prompt": "y"}},
        "[1, 2]")
    lines, errors = read_batch(path)
    assert [x.custom_id for x in lines] == ["ok"]
    assert [(e.line, e.custom_id, e.code) for e in errors] == [
        (1, None, "invalid_json"), (2, None, "missing_custom_id"),
        (3, "get", "invalid_line"), (4, "where", "invalid_line"),
        (5, "nobody", "invalid_line"), (6, "short", "invalid_line"),
        (8, "ok", "duplicate_custom_id"), (9, None, "invalid_line")]
    assert errors[0].as_dict()["error"]["code"] == "invalid_json"
