"""Server batches on the real model through a real ``chinwag serve``: the ``openai`` client
uploads, creates, polls to ``completed``, downloads and cancels another; a server killed in
the middle of a batch continues it when started again on the same database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openai import OpenAI

from support.waiting import wait_until

pytestmark = pytest.mark.slow

SCHEMA = {"type": "object", "properties": {"mood": {"enum": ["happy", "sad"]}},
          "required": ["mood"]}


def chat_line(i: int, tokens: int = 12) -> dict[str, Any]:
    return {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "assistant", "max_tokens": tokens,
                     "messages": [{"role": "user", "content": f"Say something about {i}."}]}}


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_the_openai_client_runs_a_batch_and_cancels_another(
        make_server: Callable[..., Any], tmp_path: Path) -> None:
    server = make_server("--db", str(tmp_path / "b.db"), "--parallel", "4")
    client = OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
    rows = [chat_line(i) for i in range(4)] + [
        {"custom_id": "s0", "persona": "assistant", "prompt": "How do you feel?",
         "schema": SCHEMA, "max_tokens": 24}]
    uploaded = client.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(rows))
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"run": "test"})
    other_file = client.files.create(file=("long.jsonl", jsonl([chat_line(i, 64)
                                                                  for i in range(40)])),
                                     purpose="batch")
    other = client.batches.create(input_file_id=other_file.id,
                                  endpoint="/v1/chat/completions", completion_window="24h")
    cancelled = client.batches.cancel(other.id)
    assert cancelled.status in ("cancelling", "cancelled")

    wait_until(lambda: client.batches.retrieve(batch.id).status == "completed", seconds=300,
               what="the batch completed")
    done = client.batches.retrieve(batch.id)
    assert done.request_counts is not None and done.metadata == {"run": "test"}
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (5, 5, 0)
    assert done.output_file_id is not None and done.error_file_id is None
    output = [json.loads(line) for line in client.files.content(done.output_file_id)
              .text.splitlines()]
    assert sorted(o["custom_id"] for o in output) == ["c0", "c1", "c2", "c3", "s0"]
    for line in output:
        assert line["response"]["status_code"] == 200 and line["error"] is None
        message = line["response"]["body"]["choices"][0]["message"]["content"]
        assert message
        if line["custom_id"] == "s0":
            jsonschema.validate(json.loads(message), SCHEMA)

    ended = client.batches.retrieve(other.id)
    assert ended.status == "cancelled" and ended.request_counts is not None
    assert ended.request_counts.completed < 40
    listed = {b.id for b in client.batches.list()}
    assert listed == {batch.id, other.id}
    assert {f.id for f in client.files.list()} >= {uploaded.id, other_file.id,
                                                   done.output_file_id}
    assert client.files.delete(uploaded.id).deleted


def test_a_batch_continues_after_the_server_is_killed(
        make_server: Callable[..., Any], tmp_path: Path) -> None:
    args = ("--db", str(tmp_path / "kill.db"), "--parallel", "2")
    first = make_server(*args)
    rows = [chat_line(i, 16) for i in range(16)]
    file_id = httpx.post(f"{first.url}/v1/files", files={"file": ("in.jsonl", jsonl(rows))},
                         data={"purpose": "batch"}, timeout=30).json()["id"]
    batch_id = httpx.post(f"{first.url}/v1/batches", json={
        "input_file_id": file_id, "endpoint": "/v1/chat/completions",
        "completion_window": "24h"}, timeout=30).json()["id"]

    def found(server: Any) -> dict[str, Any]:
        return dict(httpx.get(f"{server.url}/v1/batches/{batch_id}", timeout=30).json())

    def completed(server: Any) -> int:
        return int(found(server)["request_counts"]["completed"])

    wait_until(lambda: completed(first) >= 3, seconds=300, what="three lines done")
    first.process.kill()  # SIGKILL: nothing is saved on the way out
    first.process.wait()

    second = make_server(*args)
    wait_until(lambda: found(second)["status"] == "completed", seconds=300,
               what="the batch completed after the restart")
    done = found(second)
    assert done["request_counts"] == {"total": 16, "completed": 16, "failed": 0}
    text = httpx.get(f"{second.url}/v1/files/{done['output_file_id']}/content", timeout=30).text
    ids = [json.loads(line)["custom_id"] for line in text.splitlines()]
    assert sorted(ids) == sorted(f"c{i}" for i in range(16))  # each exactly once
