"""What only a real ``chinwag serve`` process shows: requests at once on the real model, a body
sent in chunks over a socket, a model file that cannot be loaded. (Bad input, API keys and the
queue's 503 are tested in-process: test_errors.py, test_auth.py.)"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow
MODEL = "gemma-3-270m-q4_k_m"


def test_chunked_payload_over_the_limit_is_a_413(server: Any) -> None:
    """A body without ``Content-Length``, in chunks (``TestClient`` reads a body whole before
    the app sees it, so only a socket sends it in pieces)."""
    def chunks() -> Any:
        for _ in range(30):
            yield b"x" * 100_000

    reply = httpx.post(f"{server.url}/v1/completions", content=chunks(),
                       headers={"content-type": "application/json"}, timeout=30)
    assert reply.status_code == 413


def test_requests_wait_their_turn_and_none_is_interrupted(server: Any) -> None:
    results: list[tuple[int, str]] = []

    def one(i: int) -> None:
        reply = httpx.post(f"{server.url}/v1/completions", timeout=120, json={
            "model": MODEL, "prompt": f"Story {i}: Once upon a time", "max_tokens": 24,
            "temperature": 0})
        results.append((reply.status_code, reply.json()["choices"][0]["finish_reason"]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [(200, "length")] * 4


def test_bad_model_file_fails_at_startup_with_a_clear_message(tmp_path: Any) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "chinwag", "serve", "--model",
                             str(tmp_path / "missing.gguf")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "model file not found" in result.stderr


def test_eight_streams_at_once_each_follow_their_own_prompt(server: Any) -> None:
    """Eight concurrent streams are batched together; each continues its own count."""
    results: dict[int, str] = {}

    def one(n: int) -> None:
        body = {"model": MODEL, "prompt": f"{n}, {n + 1}, {n + 2}, {n + 3},", "max_tokens": 8,
                "temperature": 0, "repeat_penalty": 1.0, "stream": True}
        text = ""
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body,
                          timeout=120) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: {"):
                    text += json.loads(line[6:])["choices"][0]["text"]
        results[n] = text

    threads = [threading.Thread(target=one, args=(n,)) for n in range(10, 90, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(10, 90, 10))
    for n, text in results.items():
        assert text.startswith(f" {n + 4}, {n + 5}"), (n, text)
