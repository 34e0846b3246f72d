"""A model that fails under the server: the real engine in-process, ``llama_decode`` made to
fail while two streams decode together. Both clients learn it (an SSE ``error`` event, or a
500 if nothing had been sent yet), neither gets a cut answer ending in ``[DONE]``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import llama_cpp
import pytest
from fastapi.testclient import TestClient

from chinwag.backends.llamacpp import LlamaCppBackend
from chinwag.server import create_app
from chinwag.settings import Settings

pytestmark = pytest.mark.slow


def test_a_failed_decode_reaches_every_stream_in_the_step(
        model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = LlamaCppBackend(model_path, n_ctx=512, n_threads=2, n_parallel=2)
    real_decode = llama_cpp.llama_decode
    together = 0

    def decode(ctx: object, batch: object) -> int:
        nonlocal together
        if batch.n_tokens == 2:  # type: ignore[attr-defined]  # both streams decoding
            together += 1
            if together == 4:
                return -3  # llama.cpp: the graph could not be computed
        return int(real_decode(ctx, batch))

    monkeypatch.setattr(llama_cpp, "llama_decode", decode)
    answers: dict[int, tuple[int, list[str]]] = {}
    with TestClient(create_app(Settings(), backend, close_backend=True)) as client:
        model = client.get("/v1/models").json()["data"][0]["id"]
        gate = threading.Barrier(2)

        def one(i: int) -> None:
            body = {"model": model, "prompt": f"Story {i}: once upon a time", "stream": True,
                    "max_tokens": 300, "temperature": 0, "repeat_penalty": 1.0}
            gate.wait()
            with client.stream("POST", "/v1/completions", json=body) as reply:
                answers[i] = (reply.status_code, [line[6:] for line in reply.iter_lines()
                                                  if line.startswith("data: ")])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        metrics = client.get("/metrics").text
    assert together >= 4
    for status, data in answers.values():
        assert status == 200 and data, (status, data)
        assert "[DONE]" not in data
        error = json.loads(data[-1])["error"]
        assert error["code"] == "model_error" and "code -3" in error["message"]
        assert all(json.loads(d)["choices"][0]["finish_reason"] is None for d in data[:-1])
    assert 'chinwag_engine_generations_total{event="failed"} 2.0' in metrics
