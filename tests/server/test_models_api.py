"""Several models in one app (in-process, scripted LLMs): ``/v1/models`` statuses, ``model``
choosing the LLM, ``/models/load`` and ``/models/unload``, failed loads, ``keep_alive``,
``/metrics``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chinwag.backends.scripted import ScriptedBackend
from chinwag.settings import Settings


@pytest.fixture
def llms(tmp_path: Path) -> Path:
    folder = tmp_path / "llms"
    folder.mkdir()
    for name in ("echo1", "echo2"):
        (folder / f"{name}.yaml").write_text(
            f"backend: scripted\ndescription: the {name} model\ndefault_reply: I am {name}\n")
    (folder / "broken.yaml").write_text("backend: llamacpp\nmodel: nowhere.gguf\n")
    return folder


def app(make_app: Callable[..., TestClient], llms: Path, **settings: Any) -> TestClient:
    return make_app(Settings(llms_dir=llms, more_llms=["echo1", "echo2", "broken"],
                             **settings), ScriptedBackend(default_reply="I am the default"))


def statuses(client: TestClient) -> dict[str, str]:
    listed = client.get("/v1/models").json()["data"]
    return {m["id"]: m["status"] for m in listed if "status" in m}


def chat(client: TestClient, model: str, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "Who are you?"}], **extra})


def test_models_are_listed_with_their_status_and_load_when_named(
        make_app: Callable[..., TestClient], llms: Path) -> None:
    client = app(make_app, llms, models_max=1)
    assert statuses(client) == {"scripted": "loaded", "echo1": "unloaded",
                                "echo2": "unloaded", "broken": "unloaded"}
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert listed["echo1"]["description"] == "the echo1 model"
    assert "assistant" in listed  # the personas are still there
    reply = chat(client, "echo1")
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "echo1"
    assert reply.json()["choices"][0]["message"]["content"] == "I am echo1"
    # the app's backend was given by the caller: it stays loaded, out of the count
    assert statuses(client) == {"scripted": "loaded", "echo1": "loaded",
                                "echo2": "unloaded", "broken": "unloaded"}
    default = chat(client, "")
    assert default.json()["choices"][0]["message"]["content"] == "I am the default"
    completion = client.post("/v1/completions", json={"model": "echo2", "prompt": "Hi"})
    assert completion.json()["choices"][0]["text"] == "I am echo2"
    assert statuses(client) == {"scripted": "loaded", "echo1": "unloaded",
                                "echo2": "loaded", "broken": "unloaded"}
    assert client.get("/health").json()["models"]["echo2"] == "loaded"


def test_load_and_unload(make_app: Callable[..., TestClient], llms: Path) -> None:
    client = app(make_app, llms)
    loaded = client.post("/models/load", json={"model": "echo2"})
    assert loaded.status_code == 200 and loaded.json()["success"] is True
    assert loaded.json()["model"]["status"] == "loaded"
    listed = {m["id"]: m for m in client.get("/models").json()["data"]}
    assert listed["echo2"]["status"] == "loaded" and listed["echo2"]["loads"] == 1
    assert listed["echo2"]["requests"] == 0 and listed["echo2"]["idle_since"] is not None
    gone = client.post("/models/unload", json={"model": "echo2"})
    assert gone.status_code == 200 and gone.json()["model"]["status"] == "unloaded"
    again = client.post("/models/unload", json={"model": "echo2"})
    assert again.status_code == 400 and "not loaded" in again.json()["error"]["message"]
    unknown = client.post("/models/load", json={"model": "nope"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert "echo1" in unknown.json()["error"]["message"]
    assert client.post("/models/load", json={}).status_code == 400


def test_a_failed_load_is_a_500_with_the_loaders_message_and_marks_the_model(
        make_app: Callable[..., TestClient], llms: Path) -> None:
    client = app(make_app, llms)
    reply = chat(client, "broken")
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert error["code"] == "model_load_failed" and "nowhere.gguf" in error["message"]
    assert statuses(client)["broken"] == "failed"
    listed = {m["id"]: m for m in client.get("/models").json()["data"]}
    assert "nowhere.gguf" in listed["broken"]["error"]
    assert chat(client, "echo1").status_code == 200  # the others are unharmed
    assert client.post("/models/load", json={"model": "broken"}).status_code == 500


def test_unknown_model_or_persona_is_a_404_naming_both(
        make_app: Callable[..., TestClient], llms: Path) -> None:
    reply = chat(app(make_app, llms), "gpt-4")
    assert reply.status_code == 404
    message = reply.json()["error"]["message"]
    assert "assistant" in message and "echo1" in message


def test_keep_alive_is_checked_and_zero_unloads_after_the_request(
        make_app: Callable[..., TestClient], llms: Path) -> None:
    client = app(make_app, llms)
    bad = chat(client, "echo1", keep_alive="soon")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "keep_alive"
    assert chat(client, "echo1", keep_alive="10m").status_code == 200
    listed = {m["id"]: m for m in client.get("/models").json()["data"]}
    assert listed["echo1"]["expires_at"] is not None
    assert chat(client, "echo1", keep_alive=0).status_code == 200
    for _ in range(1000):  # the unload runs on the app's loop once the request has ended
        if statuses(client)["echo1"] == "unloaded":
            break
    assert statuses(client)["echo1"] == "unloaded"


def test_the_model_routes_need_the_key(make_app: Callable[..., TestClient], llms: Path) -> None:
    client = app(make_app, llms, api_key="sesame")
    assert client.get("/models").status_code == 401
    assert client.post("/models/load", json={"model": "echo1"}).status_code == 401
    headers = {"Authorization": "Bearer sesame"}
    assert client.post("/models/load", json={"model": "echo1"}, headers=headers).status_code \
        == 200


def test_metrics_count_loads_and_unloads_by_reason(
        make_app: Callable[..., TestClient], llms: Path) -> None:
    client = app(make_app, llms, models_max=1)
    chat(client, "echo1")
    chat(client, "echo2")
    text = client.get("/metrics").text
    assert 'chinwag_model_loads_total{model="echo1"} 1.0' in text
    assert 'chinwag_model_unloads_total{model="echo1",reason="max_models"} 1.0' in text
    assert 'chinwag_model_loaded{model="echo2"} 1.0' in text
    assert 'chinwag_model_loaded{model="echo1"} 0.0' in text
    assert 'chinwag_model_load_seconds_count{model="echo2"} 1.0' in text
