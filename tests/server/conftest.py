"""A real ``chinwag serve`` on 127.0.0.1 and a free port, on the real embedded model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """Start ``chinwag serve`` and wait until ``/health`` answers (at most 120 s)."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CHINWAG_", "LLM_"))}
    full_env.update(env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chinwag", "serve", "--host", "127.0.0.1", "--port",
             str(port), "--n-ctx", "2048", *args], stdout=out, stderr=subprocess.STDOUT,
            env=full_env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chinwag serve exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return Server(url, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"chinwag serve did not start: {log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()


TEST_PERSONAS = Path(__file__).parent.parent / "data" / "personas"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session, without an API key, with the built-in personas and those
    of tests/data/personas (``counter``, ``recall``)."""
    s = start_server(tmp_path_factory.mktemp("serve"),
                     env={"CHINWAG_PERSONAS": str(TEST_PERSONAS)})
    yield s
    stop_server(s)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers with extra ``chinwag serve`` arguments; all are stopped after the test."""
    started: list[Server] = []

    def make(*args: str, env: dict[str, str] | None = None) -> Server:
        s = start_server(tmp_path, *args, env=env)
        started.append(s)
        return s

    yield make
    for s in started:
        stop_server(s)
