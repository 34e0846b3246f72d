"""Fixtures shared by the whole suite: the real embedded model (loaded once), a scripted
backend, a clean environment (no CHINWAG_*/LLM_* variables leak in from the shell, and
conversations go to a temporary data folder), a real ``chinwag serve`` and a real llama.cpp
``llama-server`` on 127.0.0.1 and free ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chinwag.backends.scripted import ScriptedBackend
from chinwag.settings import Settings
from support.pages import PageServer, serve, stop

ENV_PREFIXES = ("CHINWAG_", "LLM_", "SLACK_", "DISCORD_", "TEAMS_")


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


# -- a real chinwag serve --------------------------------------------------------------------


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
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    full_env.update(env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chinwag", "serve", "--host", "127.0.0.1", "--port",
             str(port), "--n-ctx", "2048", *args], stdout=out, stderr=subprocess.STDOUT,
            env=full_env)
    return wait_until_healthy(Server(f"http://127.0.0.1:{port}", process, log), "chinwag serve")


def wait_until_healthy(server: Server, name: str, seconds: float = 120) -> Server:
    """Wait until ``server``'s ``/health`` answers 200; raise with its log if it exits or
    does not answer in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{name} exited: {server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.process.kill()
    raise RuntimeError(f"{name} did not start: {server.log.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()


TEST_PERSONAS = Path(__file__).parent / "data" / "personas"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session, without an API key, with the built-in personas and those
    of tests/data/personas (``counter``, ``long-counter``, ``recall``)."""
    s = start_server(tmp_path_factory.mktemp("serve"),
                     env={"CHINWAG_PERSONAS": str(TEST_PERSONAS)})
    yield s
    stop_server(s)


def _servers(tmp: Path) -> Iterator[Callable[..., Server]]:
    """A function starting servers in ``tmp``; each is stopped when the generator ends."""
    started: list[Server] = []

    def make(*args: str, env: dict[str, str] | None = None) -> Server:
        s = start_server(tmp, *args, env=env)
        started.append(s)
        return s

    yield make
    for s in started:
        stop_server(s)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers with extra ``chinwag serve`` arguments; all are stopped after the test."""
    yield from _servers(tmp_path)


@pytest.fixture(scope="module")
def make_module_server(tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[Callable[..., Server]]:
    """``make_server`` for servers that the tests of one module share: stopped after the
    module."""
    yield from _servers(tmp_path_factory.mktemp("serve-module"))


# -- llama.cpp's own server, the reference -------------------------------------------------------
BUILD_LLAMA_SERVER = Path(__file__).parent.parent / "scripts" / "build-llama-server"


def llama_server_binary() -> Path:
    """llama.cpp's ``llama-server`` built from the sources llama-cpp-python vendors (cached after
    the first build, several minutes on 2 cores). Skips the test, with the reason, when cmake
    or a C++ compiler is missing."""
    missing = [tool for tool in ("cmake", "g++") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cannot build llama-server: {', '.join(missing)} not installed")
    built = subprocess.run([str(BUILD_LLAMA_SERVER)], capture_output=True, text=True,
                           env={**os.environ, "PYTHON": sys.executable})
    if built.returncode != 0:
        raise RuntimeError(f"scripts/build-llama-server failed:\n{built.stderr[-3000:]}")
    return Path(built.stdout.strip().splitlines()[-1]) / "llama-server"


@pytest.fixture(scope="session")
def llama_server(model_path: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Server]:
    """llama.cpp's server on the embedded model (n_ctx 2048, 2 threads, 2 slots)."""
    binary = llama_server_binary()
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "llama-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(binary), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port),
             "-c", "4096", "-np", "2", "-t", "2", "--no-webui"],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "LD_LIBRARY_PATH": str(binary.parent)})
    server = wait_until_healthy(Server(f"http://127.0.0.1:{port}", process, log), "llama-server")
    yield server
    stop_server(server)


@pytest.fixture
def servers() -> Iterator[tuple[PageServer, PageServer]]:
    """Page servers (``support.pages``) on 127.0.0.1 and 127.0.0.2: ``(main, other)``; the
    first redirects to the second on ``/redirect-other-host``. Stopped with their threads
    when the test ends."""
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
