"""Fixtures shared by the whole suite: the real embedded model (loaded once), a scripted
backend, and a clean environment (no CHINWAG_*/LLM_* variables leak in from the shell, and
conversations go to a temporary data folder)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chinwag.backends.scripted import ScriptedBackend
from chinwag.settings import Settings

ENV_PREFIXES = ("CHINWAG_", "LLM_")


def pytest_configure(config: pytest.Config) -> None:
    """Keep the conversation database of every test run, and of the servers and CLIs it
    starts, out of the user's own (``$XDG_DATA_HOME/chinwag/chinwag.db``)."""
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="chinwag-test-data-")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(ENV_PREFIXES):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded model's GGUF file, assembled into the user's cache as chinwag does."""
    from chinwag.models import resolve_model

    return resolve_model(Settings())


@pytest.fixture(scope="session")
def llama(model_path: Path) -> Iterator[object]:
    """The real embedded model behind chinwag's llama.cpp backend (session-scoped)."""
    from chinwag.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(model_path, n_ctx=2048, n_threads=2)
    yield backend
    backend.close()


@pytest.fixture
def scripted() -> ScriptedBackend:
    return ScriptedBackend()
