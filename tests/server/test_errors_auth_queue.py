"""Bad input, API keys and the bounded queue, against real servers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow
MODEL = "gemma-3-270m-q4_k_m"


def error_of(reply: httpx.Response) -> dict[str, Any]:
    body = reply.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"a string"', b""])
def test_malformed_or_non_object_body_is_a_400(server: Any, content: bytes) -> None:
    reply = httpx.post(f"{server.url}/v1/chat/completions", content=content,
                       headers={"content-type": "application/json"}, timeout=10)
    assert reply.status_code == 400
    assert error_of(reply)["type"] == "invalid_request_error"


def test_missing_messages_is_a_400_naming_the_field(server: Any) -> None:
    reply = httpx.post(f"{server.url}/v1/chat/completions", json={"model": MODEL}, timeout=10)
    assert reply.status_code == 400 and error_of(reply)["param"] == "messages"


def test_wrong_type_is_a_400(server: Any) -> None:
    reply = httpx.post(f"{server.url}/v1/completions",
                       json={"model": MODEL, "prompt": "x", "temperature": "hot"}, timeout=10)
    assert reply.status_code == 400 and error_of(reply)["param"] == "temperature"


def test_payload_over_the_limit_is_a_413(server: Any) -> None:
    huge = {"model": MODEL, "prompt": "x" * 2_000_000}
    reply = httpx.post(f"{server.url}/v1/completions", json=huge, timeout=30)
    assert reply.status_code == 413 and error_of(reply)["code"] == "payload_too_large"


def test_chunked_payload_over_the_limit_is_a_413(server: Any) -> None:
    def chunks() -> Any:
        for _ in range(30):
            yield b"x" * 100_000

    reply = httpx.post(f"{server.url}/v1/completions", content=chunks(),
                       headers={"content-type": "application/json"}, timeout=30)
    assert reply.status_code == 413


def test_unknown_route_is_an_openai_shaped_404(server: Any) -> None:
    reply = httpx.get(f"{server.url}/v1/nothing-here", timeout=10)
    assert reply.status_code == 404 and error_of(reply)["type"] == "invalid_request_error"


def test_server_keeps_serving_after_errors(server: Any) -> None:
    httpx.post(f"{server.url}/v1/completions", content=b"{", timeout=10)
    reply = httpx.post(f"{server.url}/v1/completions",
                       json={"model": MODEL, "prompt": "Hi", "max_tokens": 2}, timeout=30)
    assert reply.status_code == 200


def test_api_key_required_when_configured(make_server: Callable[..., Any]) -> None:
    s = make_server("--api-key", "sesame,other")
    assert httpx.get(f"{s.url}/health", timeout=10).status_code == 200  # stays open
    assert httpx.get(f"{s.url}/", timeout=10).status_code == 200  # the web page too
    missing = httpx.get(f"{s.url}/v1/models", timeout=10)
    assert missing.status_code == 401 and error_of(missing)["code"] == "invalid_api_key"
    wrong = httpx.get(f"{s.url}/v1/models", headers={"Authorization": "Bearer nope"},
                      timeout=10)
    assert wrong.status_code == 401
    assert httpx.get(f"{s.url}/v1/models", headers={"X-Api-Key": "other"},
                     timeout=10).status_code == 200
    assert httpx.get(f"{s.url}/gpt/villager", params={"prompt": "hi"},
                     timeout=10).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{s.url}/v1", api_key="nope", max_retries=0).models.list()
    good = openai.OpenAI(base_url=f"{s.url}/v1", api_key="sesame", max_retries=0)
    assert any(m.id == "villager" for m in good.models.list().data)


def test_queue_over_its_bound_is_a_503_with_retry_after(
        make_server: Callable[..., Any]) -> None:
    s = make_server("--max-queue", "0", "--parallel", "1")
    long = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 200,
            "temperature": 0.8, "stream": True}
    with httpx.stream("POST", f"{s.url}/v1/completions", json=long, timeout=120) as running:
        lines = running.iter_lines()
        next(line for line in lines if line.startswith("data: "))  # it holds the model now
        busy = httpx.post(f"{s.url}/v1/completions", json={"model": MODEL, "prompt": "Hi"},
                          timeout=30)
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1" and error_of(busy)["code"] == "overloaded"
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"  # never interrupted by the refused one
    after = httpx.post(f"{s.url}/v1/completions",
                       json={"model": MODEL, "prompt": "Hi", "max_tokens": 2}, timeout=30)
    assert after.status_code == 200


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
