"""chinwag.integrations: the Evennia NPC inside a real Evennia game, and its Twisted client
against real servers.

The game tests run once per session: a fixture makes a game folder (``evennia --init``,
``evennia migrate``, offline), copies tests/data/evennia_game_tests.py into it and runs
``evennia test`` on it; each of that module's tests is reported here as its own test. The
client tests run tests/data/npc_twisted_client.py in a subprocess, which runs the reactor.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("evennia", reason="the Evennia integration needs chinwag[evennia]")

DATA = Path(__file__).parent.parent / "data"
GAME_TESTS = DATA / "evennia_game_tests.py"
CLIENT = DATA / "npc_twisted_client.py"
EVENNIA = Path(sys.executable).parent / "evennia"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CHINWAG_", "LLM_", "DJANGO_"))}


def game_test_names() -> list[str]:
    """The test methods of tests/data/evennia_game_tests.py, read without importing it."""
    tree = ast.parse(GAME_TESTS.read_text())
    return [node.name for cls in tree.body if isinstance(cls, ast.ClassDef)
            for node in cls.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


def run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(EVENNIA), *args], cwd=cwd, env=clean_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return done


@pytest.fixture(scope="session")
def evennia_game_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each game test's outcome (``ok``, ``FAIL``, ``ERROR``, ``skipped ...``) by name, and
    the whole output under ``"__output__"``."""
    root = tmp_path_factory.mktemp("evennia")
    init = run(["--init", "game"], root, 120)
    assert init.returncode == 0, init.stdout[-3000:]
    game = root / "game"
    migrate = run(["migrate"], game, 300)
    assert migrate.returncode == 0, migrate.stdout[-3000:]
    shutil.copy(GAME_TESTS, game / "world" / "test_chinwag.py")
    tested = run(["test", "--settings", "settings.py", "--verbosity", "2",
                  "world.test_chinwag"], game, 600)
    results = {match["name"]: match["outcome"] for match in re.finditer(
        # "NAME (world.test_chinwag.CLASS.NAME)", its docstring's first line, " ... ok"
        r"^(?P<name>test_\w+) \(world\.test_chinwag\.[\w.]+\)(?:\n.*?)? \.\.\. "
        r"(?P<outcome>.+)$",
        tested.stdout, re.MULTILINE)}
    results["__output__"] = tested.stdout
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", game_test_names())
def test_in_an_evennia_game(evennia_game_results: dict[str, str], name: str) -> None:
    """One test of tests/data/evennia_game_tests.py, run by ``evennia test`` in a real game:
    the reply reaches the room, ``{``/``}``/``$conj()`` come through literally, ``talk old
    man = hi`` parses, leaving cancels, the persona lookup order, overhearing."""
    output = evennia_game_results["__output__"]
    assert evennia_game_results.get(name) == "ok", output[-6000:]


# -- the Twisted client, its reactor running in a subprocess -------------------------------------


extra: dict[str, Any] = {}  # what the client printed besides thinking lines and the result


def talk(url: str, persona: str = "villager", text: str = "Hello!", timeout: float = 120,
         on_line: Any = None, cancel: str | None = None) -> Any:
    """Run tests/data/npc_twisted_client.py; call ``on_line`` with each thinking line as the
    client prints it; return its final ``result`` (a dict, or ``"cancelled"``)."""
    extra.clear()
    process = subprocess.Popen(
        [sys.executable, str(CLIENT), url, persona, text, str(timeout),
         *([cancel] if cancel else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    assert process.stdout is not None
    result = None
    try:
        for line in process.stdout:
            message = json.loads(line)
            if "thinking" in message and on_line is not None:
                on_line(message["thinking"])
            result = message.get("result", result)
            extra.update({k: v for k, v in message.items() if k in ("overhear", "cancel")})
        process.wait(timeout=timeout + 30)
    finally:
        if process.poll() is None:
            process.kill()
    assert result is not None, process.stderr.read() if process.stderr else ""
    return result


def npc_api_missing(url: str) -> bool:
    paths = httpx.get(f"{url}/openapi.json", timeout=30).json().get("paths", {})
    return "/npc/{persona}/talk" not in paths


@pytest.mark.slow
def test_twisted_client_gets_a_real_answer(server: Any) -> None:
    if npc_api_missing(server.url):
        pytest.skip("the server has no NPC API (POST /npc/{persona}/talk) yet")
    result = talk(server.url, cancel="none-then-more")
    assert result["error"] is None, result
    assert result["reply"] and result["reply"].strip()
    assert result["conversation"]
    assert extra == {"overhear": True, "cancel": True}, "overhear or cancel was refused"


class _Stub(BaseHTTPRequestHandler):
    """``/stall``: reads the request and never answers. ``/sse/...``: a thinking line, then
    waits for ``release`` before the reply (events in the ``event:`` form, or the
    ``data: {"type"}`` form under ``/sse-typed``). ``/fail``: a 503 error body with a
    fallback line."""

    release = threading.Event()
    stop = threading.Event()

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/stall"):
            self.stop.wait(60)
            return
        if self.path.startswith("/fail"):
            body = json.dumps({"error": {"message": "busy", "type": "overloaded",
                                         "param": None, "code": "overloaded"},
                               "fallback_line": "Bertha is too busy to talk."}).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        typed = self.path.startswith("/sse-typed")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()

        def event(name: str, data: dict[str, Any]) -> None:
            if typed:
                self.wfile.write(f"data: {json.dumps({'type': name, **data})}\n\n".encode())
            else:
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\r\n\r\n".encode())
            self.wfile.flush()

        event("thinking", {"line": "Bertha hums, thinking."})
        self.release.wait(60)
        event("token", {"text": "Fresh "})
        event("reply", {"text": "Fresh {bread} $conj(today)!", "conversation": "c1"})


@pytest.fixture
def stub() -> Iterator[str]:
    """A local HTTP server for the client's failure and streaming cases; its URL."""
    _Stub.release.clear()
    _Stub.stop.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        _Stub.stop.set()
        _Stub.release.set()
        httpd.shutdown()
        httpd.server_close()


def test_twisted_client_times_out_against_a_stalled_route(stub: str) -> None:
    result = talk(f"{stub}/stall", timeout=1)
    assert result["reply"] is None
    assert result["error"] == "no answer from chinwag within 1 s"


@pytest.mark.parametrize("route", ["/sse", "/sse-typed"])
def test_twisted_client_delivers_thinking_before_the_reply(stub: str, route: str) -> None:
    """The stub holds the reply until the client has printed the thinking line, so the test
    passes only if the line was delivered while the stream was still open."""
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        _Stub.release.set()

    result = talk(f"{stub}{route}", timeout=60, on_line=on_line)
    assert seen == ["Bertha hums, thinking."]
    assert result["reply"] == "Fresh {bread} $conj(today)!"
    assert result["conversation"] == "c1" and result["error"] is None


def test_cancelling_a_talk_waiting_for_headers_is_a_cancel(stub: str) -> None:
    assert talk(f"{stub}/stall", timeout=60, cancel="0.5") == "cancelled"


def test_cancelling_a_talk_while_it_streams_is_a_cancel(stub: str) -> None:
    assert talk(f"{stub}/sse", timeout=60, cancel="thinking") == "cancelled"


def test_twisted_client_reads_an_error_body_and_its_fallback_line(stub: str) -> None:
    result = talk(f"{stub}/fail", timeout=60)
    assert result["reply"] is None
    assert result["error"] == "busy"
    assert result["fallback_line"] == "Bertha is too busy to talk."


def test_twisted_client_reports_a_refused_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    result = talk(f"http://127.0.0.1:{port}", timeout=30)
    assert result["reply"] is None and result["error"]
