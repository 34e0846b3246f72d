"""Running a batch through the app in-process on a scripted backend: the output and error
files, written as lines finish; resuming; refusing a changed input or an existing output."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from chinwag.backends.scripted import ScriptedBackend
from chinwag.batch import BatchFiles, Progress, read_batch, run_batch
from chinwag.batch.runner import BatchRefused
from chinwag.server import create_app
from chinwag.settings import Settings


def lines_file(path: Path, n: int, *extra: str) -> Path:
    rows = [json.dumps({"custom_id": f"t{i}", "url": "/v1/completions",
                        "body": {"prompt": f"Line {i}", "max_tokens": 4}}) for i in range(n)]
    path.write_text("\n".join([*rows, *extra]) + "\n")
    return path


def run(tmp_path: Path, files: BatchFiles, *, resume: bool = False,
        seen: list[int] | None = None) -> Progress:
    backend = ScriptedBackend(default_reply="done and dusted")
    app = create_app(Settings(db=tmp_path / "b.db"), backend)
    lines, errors = read_batch(files.input)
    return asyncio.run(run_batch(app, lines, errors, files, parallel=3, resume=resume,
                                 on_progress=(None if seen is None else
                                              lambda p: seen.append(p.done + p.failed))))


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_results_and_failures_go_to_their_files(tmp_path: Path) -> None:
    files = BatchFiles(lines_file(tmp_path / "in.jsonl", 5, "oops",
                                  json.dumps({"custom_id": "who", "persona": "nobody",
                                              "prompt": "hi"})),
                       tmp_path / "out.jsonl", tmp_path / "out.errors.jsonl")
    seen: list[int] = []
    final = run(tmp_path, files, seen=seen)
    assert (final.total, final.done, final.failed) == (7, 5, 2)
    output = read(files.output)
    assert sorted(o["custom_id"] for o in output) == [f"t{i}" for i in range(5)]
    first = output[0]
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200 and first["response"]["request_id"]
    assert first["response"]["body"]["choices"][0]["text"] == "done and dusted"
    errors = read(files.errors)
    assert [(e["line"], e["error"]["code"]) for e in errors] == [
        (6, "invalid_json"), (7, "model_not_found")]
    assert seen == [2, 3, 4, 5, 6, 7]  # after each line run (the unreadable one counted first)
    assert final.as_dict()["eta_s"] == 0


def test_resume_skips_what_is_done_and_cuts_a_half_written_line(tmp_path: Path) -> None:
    files = BatchFiles(lines_file(tmp_path / "in.jsonl", 6), tmp_path / "out.jsonl",
                       tmp_path / "err.jsonl")
    run(tmp_path, files)
    kept = files.output.read_text().splitlines()[:2]
    files.output.write_text("\n".join(kept) + '\n{"id": "batch_req_x", "custom_id": "t')
    final = run(tmp_path, files, resume=True)
    assert (final.skipped, final.done, final.failed) == (2, 6, 0)
    ids = [o["custom_id"] for o in read(files.output)]
    assert sorted(ids) == [f"t{i}" for i in range(6)] and len(ids) == 6


def test_an_existing_output_or_a_changed_input_is_refused(tmp_path: Path) -> None:
    files = BatchFiles(lines_file(tmp_path / "in.jsonl", 2), tmp_path / "out.jsonl",
                       tmp_path / "err.jsonl")
    run(tmp_path, files)
    with pytest.raises(BatchRefused, match="--resume"):
        run(tmp_path, files)
    lines_file(files.input, 3)
    with pytest.raises(BatchRefused, match="changed since the run began"):
        run(tmp_path, files, resume=True)
    fresh = BatchFiles(files.input, tmp_path / "other.jsonl", tmp_path / "e2.jsonl")
    with pytest.raises(BatchRefused, match="missing"):
        run(tmp_path, fresh, resume=True)
