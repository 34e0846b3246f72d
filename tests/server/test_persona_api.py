"""Persona endpoints and the legacy text-generation API, on a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.slow


def test_gpt_by_get_returns_plain_text(server: Any) -> None:
    reply = httpx.get(f"{server.url}/gpt/villager", params={"prompt": "Hello!"}, timeout=60)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.text.strip() and "Traveller:" not in reply.text


def test_gpt_by_post_form(server: Any) -> None:
    reply = httpx.post(f"{server.url}/gpt/pogi", data={"prompt": "Hi Pogi!"}, timeout=60)
    assert reply.status_code == 200 and reply.text.strip()


def test_toil_without_schema_returns_a_json_object(server: Any) -> None:
    reply = httpx.post(f"{server.url}/toil/assistant", json={"prompt": "Describe a cat."},
                       timeout=120)
    assert reply.status_code == 200, reply.text
    assert isinstance(reply.json(), dict)


def test_toil_with_schema_is_valid_against_it(server: Any) -> None:
    schema = {"type": "object", "properties": {
        "mood": {"type": "string", "enum": ["happy", "sad", "grumpy"]},
        "items": {"type": "array", "items": {"type": "string", "maxLength": 15},
                  "maxItems": 3}}, "required": ["mood", "items"]}
    reply = httpx.post(f"{server.url}/toil/villager",
                       json={"prompt": "How are you and what do you sell?", "schema": schema},
                       timeout=120)
    assert reply.status_code == 200, reply.text
    jsonschema.validate(reply.json(), schema)


def test_websocket_streams_tokens_then_end_and_remembers(server: Any) -> None:
    """Two prompts on one socket: frames then ``<END>`` after each, and the second answer
    names what only the first prompt said (the ``recall`` persona answers greedily)."""
    url = server.url.replace("http://", "ws://") + "/gpt-socket/recall"
    with connect(url, open_timeout=10) as ws:
        answers = []
        for prompt in ("My name is Zorblax.", "What is my name?"):
            ws.send(prompt)
            frames = []
            while (frame := ws.recv(timeout=120)) != "<END>":
                frames.append(frame)
            assert len(frames) >= 1
            answers.append("".join(frames))
    assert "Zorblax" in answers[1]
    with connect(url, open_timeout=10) as ws:
        ws.send("What is my name?")
        fresh = ""
        while (frame := ws.recv(timeout=120)) != "<END>":
            fresh += frame
    assert "Zorblax" not in fresh, "a new socket must start a new conversation"


def test_evennia_contrib_body(server: Any) -> None:
    """Exactly what evennia/contrib/rpg/llm/llm_client.py sends and reads."""
    body = {"max_new_tokens": 250, "temperature": 0.7,
            "prompt": "You are Bertha, an old villager.\nTraveller: Hello!\nBertha:"}
    reply = httpx.post(f"{server.url}/api/v1/generate", content=json.dumps(body),
                       headers={"Content-Type": "application/json"}, timeout=120)
    assert reply.status_code == 200
    assert isinstance(json.loads(reply.content)["results"][0]["text"], str)


def test_textgen_stopping_strings_and_max_new_tokens(server: Any) -> None:
    body = {"prompt": "1, 2, 3, 4,", "max_new_tokens": 30, "temperature": 0,
            "stopping_strings": [" 7"], "seed": -1}
    text = httpx.post(f"{server.url}/api/v1/generate", json=body, timeout=60).json()[
        "results"][0]["text"]
    assert " 7" not in text and "6" in text


def test_stock_evennia_llm_client_gets_an_answer(server: Any) -> None:
    """Evennia's own ``LLMClient`` (installed from PyPI, run unchanged in its Twisted reactor)
    with ``LLM_HOST`` pointing at chinwag gets a non-empty answer. The client answers "" on any
    non-200 status, so a non-empty text means the request was accepted and parsed."""
    script = Path(__file__).parent.parent / "data" / "evennia_llm_client.py"
    done = subprocess.run([sys.executable, str(script), server.url], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    text = json.loads(done.stdout.strip().splitlines()[-1])["text"]
    assert text.strip(), f"Evennia's client got an empty answer: {done.stderr}"
