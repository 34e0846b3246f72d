import re
from pathlib import Path

import pytest

from chinwag.errors import ConfigError
from chinwag.settings import Settings, load_settings


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


@pytest.mark.parametrize("text, message", [
    ("n_ctx: 512\npersona: [unclosed\n", r"^{path}:3: not valid YAML"),
    ("n_cxt: 512\n", r"^{path}:1: unknown setting\(s\) n_cxt"),
    ("persona: villager\nn_cxt: 512\n", r"^{path}:2: unknown setting\(s\) n_cxt"),
    ("# my settings\npersona: villager\nn_ctx: lots\n",
     r"^{path}:3: n_ctx: Input should be a valid integer"),
    ("config: other.yaml\n", r"^{path}:1: unknown setting\(s\) config"),
    ("- n_ctx\n- 512\n", r"^{path}: a config file must be a mapping of setting: value"),
], ids=["broken-yaml", "unknown-setting", "unknown-setting-line-2", "wrong-type",
        "a-config-naming-another", "not-a-mapping"])
def test_a_bad_config_file_names_file_line_and_problem(tmp_path: Path, text: str,
                                                       message: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message.format(path=re.escape(str(config)))):
        load_settings(config_file=config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(config_file=tmp_path / "nope.yaml")


def test_config_file_that_is_a_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(config_file=tmp_path)


def test_empty_config_file_sets_nothing(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("# nothing yet\n")
    assert load_settings(config_file=config).model_dump(exclude={"config"}) == (
        load_settings().model_dump(exclude={"config"}))


def test_config_file_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("persona: pogi\nkv_cache_ram: 512MiB\n")
    monkeypatch.setenv("CHINWAG_CONFIG", str(config))
    assert load_settings().persona == "pogi"
    assert Settings(n_ctx=512).kv_cache_ram == 512 << 20  # Settings() reads it as well


def test_every_llama_cpp_variable_beats_the_config_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: /file.gguf\nn_ctx: 512\nn_threads: 1\n")
    monkeypatch.setenv("LLM_MODEL_FILE", "/env.gguf")
    monkeypatch.setenv("LLM_CONTEXT_WINDOW", "1024")
    s = load_settings({"n_threads": 2}, config)
    assert (s.model, s.n_ctx, s.n_threads) == ("/env.gguf", 1024, 2)


def test_chinwag_variable_wins_over_the_llama_cpp_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_CONTEXT_WINDOW", "1024")
    monkeypatch.setenv("CHINWAG_N_CTX", "2048")
    assert load_settings().n_ctx == 2048


def test_short_folder_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHINWAG_LLMS", str(tmp_path / "llms"))
    monkeypatch.setenv("CHINWAG_PERSONAS", str(tmp_path / "personas"))
    s = load_settings()
    assert (s.llms_dir, s.personas_dir) == (tmp_path / "llms", tmp_path / "personas")


def test_bare_variable_names_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9999")
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("MODEL", "/not/mine.gguf")
    s = Settings()
    assert (s.port, s.host, s.model) == (8000, "127.0.0.1", None)


def test_every_setting_reads_its_chinwag_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHINWAG_PREFILL_CHUNK", "32")
    monkeypatch.setenv("CHINWAG_KV_CACHE_DISK", "2GiB")
    s = Settings()
    assert (s.prefill_chunk, s.kv_cache_disk) == (32, 2 << 30)


def test_env_names_come_from_the_schema() -> None:
    assert Settings.env_names("n_ctx") == ("CHINWAG_N_CTX", "LLM_CONTEXT_WINDOW")
    assert Settings.env_names("personas_dir") == ("CHINWAG_PERSONAS_DIR", "CHINWAG_PERSONAS")
    assert Settings.env_names("port") == ("CHINWAG_PORT",)


def test_fetch_allow_private_reads_comma_separated_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHINWAG_FETCH_ALLOW_PRIVATE", "127.0.0.1/32, 10.1.2.3/16,,::1")
    monkeypatch.setenv("CHINWAG_FETCH_MAX_BYTES", "4MiB")
    s = Settings()
    assert s.fetch_allow_private == ["127.0.0.1/32", "10.1.0.0/16", "::1/128"]
    assert s.fetch_max_bytes == 4 << 20


def test_fetch_settings_default_to_no_private_ranges_and_2_mib() -> None:
    s = Settings()
    assert (s.fetch_allow_private, s.fetch_max_bytes) == ([], 2 << 20)


def test_fetch_allow_private_list_in_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("fetch_allow_private: [10.0.0.0/8, 192.168.1.0/24]\n")
    assert load_settings(config_file=config).fetch_allow_private == ["10.0.0.0/8",
                                                                     "192.168.1.0/24"]


def test_a_bad_fetch_range_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"fetch_allow_private.*not an address range"):
        load_settings({"fetch_allow_private": "10.0.0.0/8,intranet"})


def test_n_gpu_layers_is_auto_unless_a_number_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().n_gpu_layers == "auto"
    for given, expected in [("auto", "auto"), ("-1", -1), ("0", 0), ("20", 20)]:
        monkeypatch.setenv("CHINWAG_N_GPU_LAYERS", given)
        assert load_settings().n_gpu_layers == expected
    monkeypatch.setenv("CHINWAG_N_GPU_LAYERS", "-2")
    with pytest.raises(ConfigError, match=r"n_gpu_layers.*greater than or equal to -1"):
        load_settings()
