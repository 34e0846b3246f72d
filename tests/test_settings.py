from pathlib import Path

import pytest

from chinwag.errors import ConfigError
from chinwag.settings import load_settings


def test_defaults() -> None:
    s = load_settings()
    assert s.model is None and s.n_ctx == 4096 and s.persona == "assistant"


def test_llama_cpp_service_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_MODEL_FILE", "/models/x.gguf")
    monkeypatch.setenv("LLM_CONTEXT_WINDOW", "1024")
    monkeypatch.setenv("LLM_GPU_LAYERS", "12")
    monkeypatch.setenv("LLM_CPU_THREADS", "3")
    monkeypatch.setenv("LLM_HUGGINGFACE_REPO", "org/repo")
    monkeypatch.setenv("LLM_HUGGINGFACE_FILE", "*Q4_K_M.gguf")
    s = load_settings()
    assert (s.model, s.n_ctx, s.n_gpu_layers, s.n_threads) == ("/models/x.gguf", 1024, 12, 3)
    assert (s.hf_repo, s.hf_file) == ("org/repo", "*Q4_K_M.gguf")


def test_chinwag_model_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHINWAG_MODEL", "/m.gguf")
    assert load_settings().model == "/m.gguf"


def test_flags_beat_environment_which_beats_config_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "chinwag.yaml"
    config.write_text("n_ctx: 512\npersona: pogi\nn_batch: 64\n")
    monkeypatch.setenv("CHINWAG_N_CTX", "1024")
    s = load_settings({"persona": "villager", "model": None}, config)
    assert (s.persona, s.n_ctx, s.n_batch) == ("villager", 1024, 64)


def test_wrong_type_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_CONTEXT_WINDOW", "lots")
    with pytest.raises(ConfigError, match="n_ctx"):
        load_settings()


def test_broken_config_file_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("n_ctx: 512\npersona: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+"):
        load_settings(config_file=config)


def test_unknown_setting_in_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("n_cxt: 512\n")
    with pytest.raises(ConfigError, match="n_cxt"):
        load_settings(config_file=config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(config_file=tmp_path / "nope.yaml")
