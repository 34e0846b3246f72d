"""Fixtures of the knowledge tests: page servers on 127.0.0.1 and 127.0.0.2
(``support.pages``), stopped with their threads when the test ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.pages import PageServer, serve, stop


@pytest.fixture
def servers() -> Iterator[tuple[PageServer, PageServer]]:
    """``(on 127.0.0.1, on 127.0.0.2)``; the first redirects to the second on
    ``/redirect-other-host``."""
    started = [serve("127.0.0.1"), serve("127.0.0.2")]
    main, other = started[0][1], started[1][1]
    main.other = other.url("")
    try:
        yield main, other
    finally:
        for running in started:
            stop(*running)


@pytest.fixture
def pages(servers: tuple[PageServer, PageServer]) -> PageServer:
    """The page server on 127.0.0.1."""
    return servers[0]
