"""What the benchmarks share: building and starting llama.cpp's own server, the reference."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "scripts" / "build-llama-server"
RESULTS = ROOT / "bench" / "results"


def build_llama_server() -> Path:
    """Build (once, cached) llama.cpp's server from the llama-cpp-python version we run."""
    if not BUILD_SCRIPT.exists():
        sys.exit(f"cannot find {BUILD_SCRIPT}: the reference server cannot be built")
    print("building llama-server (cached after the first time)...", file=sys.stderr, flush=True)
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], env={**os.environ, "PYTHON": sys.executable},
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


class Served(str):
    """A running server's base URL (a ``str``) that also knows the server's process id."""

    pid: int


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (``VmHWM`` in /proc), MiB; 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(cmd: list[str], port: int, log_name: str,
            env: dict[str, str] | None = None) -> Iterator[Served]:
    """Run a server command; yield its base URL (with ``.pid``) once ``/health`` answers;
    stop it after."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = open(RESULTS / log_name, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=log,
                            stderr=subprocess.STDOUT)
    url = Served(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                sys.exit(f"{cmd[0]} exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            sys.exit(f"{cmd[0]} did not become ready in 120 s; see {log.name}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def llama_server(model: Path, *args: str) -> Iterator[Served]:
    """Run llama.cpp's server on 127.0.0.1 with ``args``; yield its base URL."""
    folder = build_llama_server()
    port = free_port()
    with serving([str(folder / "llama-server"), "-m", str(model), "--host", "127.0.0.1",
                  "--port", str(port), *args], port, "llama-server.log",
                 {"LD_LIBRARY_PATH": str(folder)}) as url:
        yield url


@contextmanager
def chinwag_server(*args: str) -> Iterator[Served]:
    """Run ``chinwag serve`` on 127.0.0.1 with ``args``; yield its base URL."""
    port = free_port()
    with serving([sys.executable, "-m", "chinwag", "serve", "--host", "127.0.0.1", "--port",
                  str(port), *args], port, "chinwag-serve.log") as url:
        yield url


def write_results(name: str, data: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def stream(url: str, body: dict[str, object],
           path: str) -> tuple[float | None, str, int, dict[str, int]]:
    """One SSE request to an OpenAI-style endpoint: (seconds to the first text, the text,
    pieces of text received, the ``usage`` object if the server sent one, else {})."""
    start = time.perf_counter()
    first: float | None = None
    text, pieces = "", 0
    usage: dict[str, int] = {}
    with httpx.stream("POST", f"{url}{path}", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                piece = choice.get("text") or (choice.get("delta") or {}).get("content")
                if piece:
                    first = first if first is not None else time.perf_counter() - start
                    text += piece
                    pieces += 1
    return first, text, pieces, usage


def stream_timed(url: str, body: dict[str, object],
                 text: list[str] | None = None) -> dict[str, float]:
    """One streamed ``/v1/completions`` request: decode tok/s (first to last text piece), time
    to the first piece and to the last, as the client sees them; the pieces are appended to
    ``text`` when given."""
    start = time.perf_counter()
    stamps: list[float] = []
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            piece = chunk["choices"][0].get("text") if chunk.get("choices") else None
            if piece:
                stamps.append(time.perf_counter())
                if text is not None:
                    text.append(piece)
    return {"tok_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]),
            "ttft_s": stamps[0] - start, "last_s": stamps[-1] - start, "pieces": len(stamps)}


def scrape(url: str) -> dict[str, float]:
    """A server's ``/metrics`` (Prometheus text format) as ``{"name{labels}": value}``."""
    values: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
    return values


def batched_bench(model: Path, threads: int, prompt_tokens: int, gen_tokens: int,
                  levels: tuple[int, ...]) -> dict[int, float]:
    """llama.cpp's ``llama-batched-bench`` (no HTTP, no sampling): its generation rate
    (``S_TG``, tokens per second) at each number of parallel sequences."""
    folder = build_llama_server()
    n_ctx = max(levels) * (prompt_tokens + gen_tokens) + 256
    out = subprocess.run(
        [str(folder / "llama-batched-bench"), "-m", str(model), "-c", str(n_ctx), "-b", "2048",
         "-ub", "512", "-npp", str(prompt_tokens), "-ntg", str(gen_tokens), "-npl",
         ",".join(map(str, levels)), "-t", str(threads)],
        env={**os.environ, "LD_LIBRARY_PATH": str(folder)}, capture_output=True, text=True,
        check=True)
    rates: dict[int, float] = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[2].isdigit():  # PP | TG | B | N_KV | T_PP | S_PP | T_TG | S_TG
            rates[int(cells[2])] = float(cells[7])
    return rates
