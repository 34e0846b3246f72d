"""``chinwag batch run`` on the real model, in a subprocess: a mixed batch (one output line
per good line, one error line per bad one, schema outputs valid, exit status 3), and a run
killed with SIGKILL then resumed (each ``custom_id`` exactly once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from support.waiting import wait_until

pytestmark = pytest.mark.slow

SCHEMA = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12}},
          "required": ["colour"]}


def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHINWAG_", "LLM_"))}
    return {**clean, "CHINWAG_DB": str(tmp_path / "batch.db")}


def batch(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "chinwag", "batch", "run", *args, "--n-ctx", "1024",
            "--progress", "none"]


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_mixed_batch(tmp_path: Path) -> None:
    rows: list[Any] = [
        {"custom_id": "chat", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "assistant", "max_tokens": 8,
                  "messages": [{"role": "user", "content": "Say hello."}]}},
        {"custom_id": "complete", "method": "POST", "url": "/v1/completions",
         "body": {"prompt": "Once upon a time", "max_tokens": 8}},
        {"custom_id": "schema", "persona": "assistant", "prompt": "Name a colour.",
         "schema": SCHEMA, "max_tokens": 40},
        "{broken",
        {"custom_id": "chat", "persona": "assistant", "prompt": "again"},
        {"custom_id": "too-long", "method": "POST", "url": "/v1/completions",
         "body": {"prompt": "word " * 3000, "max_tokens": 4}},
        {"custom_id": "nobody", "persona": "nobody", "prompt": "hi"},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    result = subprocess.run(batch(tmp_path, str(source), "-o", str(out), "--parallel", "3"),
                            capture_output=True, text=True, timeout=600, env=env(tmp_path))
    assert result.returncode == 3, result.stderr
    assert "3 of 7 lines done, 4 failed" in result.stderr
    done = {o["custom_id"]: o for o in read(out)}
    assert sorted(done) == ["chat", "complete", "schema"]
    answer = done["schema"]["response"]["body"]["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(answer), SCHEMA)
    assert done["chat"]["response"]["body"]["object"] == "chat.completion"
    errors = {(e["line"], e["error"]["code"]) for e in read(tmp_path / "out.errors.jsonl")}
    assert errors == {(4, "invalid_json"), (5, "duplicate_custom_id"),
                      (6, "context_length_exceeded"), (7, "model_not_found")}
    unreadable = subprocess.run(batch(tmp_path, str(tmp_path / "missing.jsonl"), "-o",
                                      str(tmp_path / "o2.jsonl")),
                                capture_output=True, text=True, timeout=120, env=env(tmp_path))
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr


def test_a_killed_run_resumes_and_each_line_is_done_once(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({
        "custom_id": f"n{i}", "url": "/v1/completions",
        "body": {"prompt": f"Story {i}: once upon a time", "max_tokens": 24}}) + "\n"
        for i in range(14)))
    out = tmp_path / "out.jsonl"
    first = subprocess.Popen(batch(tmp_path, str(source), "-o", str(out), "--parallel", "2"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=env(tmp_path))
    try:
        wait_until(lambda: out.exists() and out.read_text().count("\n") >= 3, 300,
                   "three lines written")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    before = out.read_text().count("\n")
    assert before < 14
    again = subprocess.run(batch(tmp_path, str(source), "-o", str(out), "--resume"),
                           capture_output=True, text=True, timeout=600, env=env(tmp_path))
    assert again.returncode == 0, again.stderr
    assert f"({before} before this run)" in again.stderr
    ids = [o["custom_id"] for o in read(out)]
    assert sorted(ids) == sorted(f"n{i}" for i in range(14)) and len(ids) == 14
    fresh = subprocess.run(batch(tmp_path, str(source), "-o", str(out)),
                           capture_output=True, text=True, timeout=120, env=env(tmp_path))
    assert fresh.returncode == 2 and "--resume" in fresh.stderr


def test_a_line_without_a_seed_gives_the_same_text_when_run_again(tmp_path: Path) -> None:
    """One line at a time: with several in one decode, llama.cpp's numbers depend on what
    else is in the batch, and texts can part after a few tokens even with equal seeds."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({
        "custom_id": f"r{i}", "url": "/v1/completions",
        "body": {"prompt": "The weather today is", "max_tokens": 12, "temperature": 1.0}})
        + "\n" for i in range(2)))
    texts = []
    for name in ("one.jsonl", "two.jsonl"):
        done = subprocess.run(batch(tmp_path, str(source), "-o", str(tmp_path / name),
                                    "--parallel", "1"),
                              capture_output=True, text=True, timeout=300, env=env(tmp_path))
        assert done.returncode == 0, done.stderr
        texts.append({o["custom_id"]: o["response"]["body"]["choices"][0]["text"]
                      for o in read(tmp_path / name)})
    assert texts[0] == texts[1]
    assert texts[0]["r0"] != texts[0]["r1"]  # different ids, different seeds


def test_bad_usage_is_exit_status_2(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"custom_id": "a", "persona": "assistant", "prompt": "hi"}\n')
    wrong = subprocess.run([sys.executable, "-m", "chinwag", "batch", "run", str(source), "-o",
                            str(tmp_path / "o.jsonl"), "--progress", "loud"],
                           capture_output=True, text=True, timeout=120, env=env(tmp_path))
    assert wrong.returncode == 2 and "--progress must be" in wrong.stderr
    assert not (tmp_path / "o.jsonl").exists()
