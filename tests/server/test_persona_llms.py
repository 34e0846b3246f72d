"""Personas that name their own LLM (``llm:``) run on it under ``chinwag serve``, beside the
personas on the server's model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow


def folders(tmp_path: Path, llm: str = "canned") -> dict[str, str]:
    (tmp_path / "llms").mkdir()
    (tmp_path / "llms" / "canned.yaml").write_text(
        "backend: scripted\nmodel_id: canned\ndefault_reply: Arr, a scripted pirate!\n")
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "pirate.yaml").write_text(
        f"name: pirate\ncharacter: Pete\nllm: {llm}\n")
    return {"CHINWAG_LLMS": str(tmp_path / "llms"),
            "CHINWAG_PERSONAS": str(tmp_path / "personas")}


def test_a_persona_runs_on_the_llm_it_names(make_server: Callable[..., Any],
                                            tmp_path: Path) -> None:
    server = make_server(env=folders(tmp_path))
    pirate = httpx.post(f"{server.url}/gpt/pirate", data={"prompt": "Ahoy!"}, timeout=60)
    assert pirate.status_code == 200 and pirate.text == "Arr, a scripted pirate!"
    villager = httpx.post(f"{server.url}/gpt/villager", data={"prompt": "Hello!"}, timeout=60)
    assert villager.status_code == 200 and "scripted pirate" not in villager.text
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none")
    reply = client.chat.completions.create(
        model="pirate", messages=[{"role": "user", "content": "Where is the treasure?"}])
    assert reply.choices[0].message.content == "Arr, a scripted pirate!"
    assert "persona pirate runs on LLM 'canned'" in server.log.read_text()


def test_a_persona_naming_an_unknown_llm_stops_serve_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHINWAG_", "LLM_"))}
    env.update(folders(tmp_path, llm="nowhere"))
    result = subprocess.run([sys.executable, "-m", "chinwag", "serve", "--port", "0"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1
    assert "unknown LLM 'nowhere'" in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_llm_given_to_serve_stops_it_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHINWAG_", "LLM_"))}
    env.update(folders(tmp_path))
    result = subprocess.run([sys.executable, "-m", "chinwag", "serve", "--port", "0",
                             "--llm", "canned", "--llm", "nowhere"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1
    assert "unknown LLM 'nowhere'" in result.stderr and "Traceback" not in result.stderr
