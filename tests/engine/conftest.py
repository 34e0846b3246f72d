"""The real model for the engine's tests, loaded once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chinwag.engine import LlamaModel


@pytest.fixture(scope="session")
def model(model_path: Path) -> Iterator[LlamaModel]:
    m = LlamaModel(model_path)
    yield m
    m.close()
