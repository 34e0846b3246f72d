"""In-process apps for the server's tests: ``create_app`` on a scripted backend, talked to
through ``TestClient`` (no socket, no model), one app per test."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from chinwag.backends.base import LanguageBackend
from chinwag.backends.scripted import ScriptedBackend
from chinwag.server import create_app
from chinwag.settings import Settings


@pytest.fixture
def make_app() -> Iterator[Callable[..., TestClient]]:
    """Start apps for ``settings`` (default: ``Settings()``) on ``backend`` (default: a new
    ``ScriptedBackend``); each is started now and stopped after the test."""
    with contextlib.ExitStack() as stack:

        def make(settings: Settings | None = None,
                 backend: LanguageBackend | None = None) -> TestClient:
            app = create_app(settings or Settings(), backend or ScriptedBackend())
            return stack.enter_context(TestClient(app))

        yield make
