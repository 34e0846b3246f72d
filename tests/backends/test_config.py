"""LLM configs: loading, the errors of bad files, lookup by name, and building backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from chinwag.backends import load_backend
from chinwag.backends.config import (
    HttpLLM,
    OpenAILLM,
    find_llm_config,
    llm_config_files,
    load_llm_config,
    open_llm,
)
from chinwag.backends.openai_http import OpenAIBackend
from chinwag.backends.scripted import ScriptedBackend
from chinwag.errors import ConfigError
from chinwag.settings import Settings
from chinwag.types import SamplingParams, collect

CONFIGS = Path(__file__).parents[2] / "configs" / "llm"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_example_validates(path: Path) -> None:
    config = load_llm_config(path)
    assert config.backend in {"openai", "http", "transformers", "human", "llamacpp"}


def test_the_vllm_and_fastchat_examples_are_openai_backends() -> None:
    vllm = load_llm_config(CONFIGS / "vllm-cluster.yaml")
    fastchat = load_llm_config(CONFIGS / "fastchat-controller.yaml")
    assert isinstance(vllm, OpenAILLM) and vllm.base_url.endswith("/v1")
    assert isinstance(fastchat, OpenAILLM) and fastchat.tokenize == "estimate"
    assert isinstance(load_llm_config(CONFIGS / "textgen-legacy.yaml"), HttpLLM)


@pytest.mark.parametrize(("text", "expected"), [
    ("backend: openai\nmodel_id: m\nbase_url: http://x/v1\ntemperature: 3\n",
     r":4: temperature: Extra inputs are not permitted"),
    ("backend: openai\nmodel_id: m\nbase_url: http://x/v1\nmax_retries: lots\n",
     r":4: max_retries: Input should be a valid integer"),
    ("backend: openai\nmodel_id: m\n", r"base_url: Field required"),
    ("backend: openai\nmodel_id: m\nbase_url: gpu-box:8000\n", r":3: base_url: String should"),
    ("backend: gpt5\n", r"backend: Input tag 'gpt5' found using 'backend' does not match"),
    ("model_id: m\n", r"'backend' is missing \(one of llamacpp, transformers, openai"),
    ("backend: [openai\nmodel_id: m\n", r":\d: not valid YAML: expected"),
    ("- just\n- a list\n", r"must be a mapping"),
])
def test_a_bad_file_names_the_file_the_line_and_the_field(tmp_path: Path, text: str,
                                                          expected: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError, match=expected) as e:
        load_llm_config(path)
    assert str(e.value).startswith(str(path))


def test_a_missing_file_and_an_unknown_name_are_config_errors(tmp_path: Path) -> None:
    settings = Settings(llms_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"not found: nowhere/x\.yaml"):
        find_llm_config("nowhere/x.yaml", settings)
    write(tmp_path, "mine.yaml", "backend: human\n")
    with pytest.raises(ConfigError, match=r"unknown LLM 'theirs'.*default, mine"):
        find_llm_config("theirs", settings)


def test_names_come_from_the_user_folder_then_the_built_in_one(tmp_path: Path) -> None:
    settings = Settings(llms_dir=tmp_path)
    assert set(llm_config_files(settings)) == {"default"}
    write(tmp_path, "default.yaml", "backend: scripted\nreplies: [mine]\n")
    assert llm_config_files(settings)["default"].parent == tmp_path  # the user's file wins
    backend = open_llm("default", settings)
    assert isinstance(backend, ScriptedBackend)
    assert collect(backend.generate("Hi", SamplingParams()))[0] == "mine"


def test_load_backend_follows_the_llm_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "remote.yaml", "backend: openai\nmodel_id: llama3\n"
                 "base_url: http://127.0.0.1:9/v1\ncontext_length: 8192\napi_key: k\n")
    backend = load_backend(Settings(llm=str(path)))
    assert isinstance(backend, OpenAIBackend)
    assert backend.context_length == 8192 and backend.info().name == "llama3"
    assert backend.client._client.headers["Authorization"] == "Bearer k"


def test_an_api_key_variable_that_is_not_set_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "r.yaml", "backend: openai\nmodel_id: m\nbase_url: http://x/v1\n"
                 "api_key_env: SOME_KEY_FOR_TESTS\n")
    monkeypatch.delenv("SOME_KEY_FOR_TESTS", raising=False)
    with pytest.raises(ConfigError, match=r"\$SOME_KEY_FOR_TESTS, which is not set"):
        open_llm(str(path), Settings())
    monkeypatch.setenv("SOME_KEY_FOR_TESTS", "abc")
    backend = open_llm(str(path), Settings())
    assert isinstance(backend, OpenAIBackend)
    assert backend.client._client.headers["Authorization"] == "Bearer abc"


def test_a_relative_gguf_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "local.yaml", "backend: llamacpp\nmodel: weights/missing.gguf\n")
    with pytest.raises(Exception, match=str(tmp_path / "weights" / "missing.gguf")):
        open_llm(str(path), Settings())
