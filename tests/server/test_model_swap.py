"""Two real models in one ``chinwag serve`` with ``--models-max 1``: the embedded Gemma (a
base model, the transcript format) and SmolLM2-135M-Instruct (its own ChatML template),
swapped on demand through the ``openai`` client."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
GEMMA = "gemma-3-270m-q4_k_m"  # the default model's id: its own name ("default" is an alias)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def statuses(url: str) -> dict[str, str]:
    listed = httpx.get(f"{url}/v1/models", timeout=30).json()["data"]
    return {m["id"]: m["status"] for m in listed if "status" in m}


@pytest.fixture
def swapping(make_server: Callable[..., Any], tmp_path: Path) -> Any:
    return make_server("--llm", "default", "--llm", "smollm2", "--models-max", "1",
                       "--parallel", "2", "--n-ctx", "1024", "--kv-cache-dir",
                       str(tmp_path / "kv"))


def test_the_openai_client_alternates_models_each_answering_with_its_own_template(
        swapping: Any, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=f"{swapping.url}/v1", api_key="none", timeout=300)
    assert statuses(swapping.url) == {GEMMA: "loaded", "smollm2": "unloaded"}
    cached: list[int] = []
    for model, chat_format in [("smollm2", "model-template"), ("default", "transcript"),
                               ("smollm2", "model-template")]:
        reply = client.chat.completions.create(
            model=model, max_tokens=8, temperature=0,
            messages=[{"role": "user", "content": "Say hello to the people of the village."}])
        assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
        cached.append(reply.usage.prompt_tokens_details.cached_tokens or 0)
        assert reply.model == model
        answered = GEMMA if model == "default" else model
        extra = reply.model_extra or {}
        assert extra["chinwag"] == {"model": answered, "chat_format": chat_format}
        assert reply.choices[0].finish_reason in ("stop", "length")
        loaded = [m for m, s in statuses(swapping.url).items() if s == "loaded"]
        assert loaded == [answered]  # one at a time
    # SmolLM2, loaded again, found the prompt it had computed in its own disk cache
    assert cached[0] == 0 and cached[2] > 0
    folders = [p for p in (tmp_path / "kv").iterdir() if p.is_dir()]
    assert len(folders) == 2  # one folder of KV states per model
    metrics = httpx.get(f"{swapping.url}/metrics", timeout=30).text
    assert 'chinwag_model_loads_total{model="smollm2"} 2.0' in metrics
    assert f'chinwag_model_unloads_total{{model="{GEMMA}",reason="max_models"}} 2.0' in metrics
    # the default model by its id
    named = client.completions.create(model=GEMMA, prompt="Once", max_tokens=2)
    assert named.model == GEMMA
    assert statuses(swapping.url)[GEMMA] == "loaded"


def test_requests_on_the_model_being_evicted_finish_before_it_goes(swapping: Any) -> None:
    """A request for another model, while a long answer streams from the loaded one: the
    stream runs to its end (not cut by the eviction), then the other model is loaded."""
    lines: list[str] = []
    started = threading.Event()

    def long_answer() -> None:
        with httpx.stream("POST", f"{swapping.url}/v1/chat/completions", timeout=300, json={
                "model": "default", "stream": True, "max_tokens": 200, "temperature": 0,
                "messages": [{"role": "user", "content": "Tell me a long story."}]}) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    lines.append(line)
                    started.set()

    reader = threading.Thread(target=long_answer)
    reader.start()
    assert started.wait(120)
    other = httpx.post(f"{swapping.url}/v1/chat/completions", timeout=300, json={
        "model": "smollm2", "max_tokens": 4,
        "messages": [{"role": "user", "content": "Hi"}]})
    reader.join(120)
    assert other.status_code == 200, other.text
    assert lines[-1] == "data: [DONE]"  # the stream on the evicted model ran to its end
    assert '"finish_reason": "length"' in lines[-2] or '"finish_reason": "stop"' in lines[-2]
    assert statuses(swapping.url) == {GEMMA: "unloaded", "smollm2": "loaded"}


def test_unloading_gives_the_memory_back_and_ps_shows_what_is_loaded(swapping: Any) -> None:
    pid = swapping.process.pid
    loaded = httpx.post(f"{swapping.url}/models/load", json={"model": "smollm2"}, timeout=300)
    assert loaded.status_code == 200 and loaded.json()["model"]["size_bytes"] > 50_000_000
    ps = subprocess.run([sys.executable, "-m", "chinwag", "ps", "--url", swapping.url],
                        capture_output=True, text=True, timeout=60)
    assert ps.returncode == 0, ps.stderr
    assert "smollm2" in ps.stdout and "loaded" in ps.stdout and "CPU" in ps.stdout
    assert GEMMA not in ps.stdout  # unloaded: shown with --all only
    everything = subprocess.run([sys.executable, "-m", "chinwag", "ps", "--all", "--url",
                                 swapping.url], capture_output=True, text=True, timeout=60)
    assert GEMMA in everything.stdout and "unloaded" in everything.stdout
    before = rss_bytes(pid)
    gone = httpx.post(f"{swapping.url}/models/unload", json={"model": "smollm2"}, timeout=300)
    assert gone.status_code == 200
    wait_until(lambda: rss_bytes(pid) < before - 40_000_000, 60,
               "the process's memory to drop by 40 MB")
    assert statuses(swapping.url) == {GEMMA: "unloaded", "smollm2": "unloaded"}
    nothing = subprocess.run([sys.executable, "-m", "chinwag", "ps", "--url", swapping.url],
                             capture_output=True, text=True, timeout=60)
    assert "No model is loaded" in nothing.stdout
    # a request loads the default again
    reply = httpx.post(f"{swapping.url}/v1/completions", timeout=300,
                       json={"prompt": "Once upon", "max_tokens": 2})
    assert reply.status_code == 200 and statuses(swapping.url)[GEMMA] == "loaded"
