"""Batch throughput: ``chinwag batch run`` against llama.cpp's server fed the same requests by
8 concurrent clients (its best use), in one run.

200 lines (``--lines``) of raw completion, ``--tokens`` (64) tokens each, the same prompts,
sampling and seeds for both; chinwag with ``--parallel 8``, llama-server with ``-np 8``. Each
runs alone; they take turns for ``--rounds`` rounds. chinwag's time is from its model being
ready (the ``elapsed_s`` of ``--progress json``) to the last line written; llama-server's from
the first request sent to the last answer received.

Then a live chat request's time to first token on ``chinwag serve`` (``--parallel 8``) while a
server batch (``/v1/batches``, the same 200 lines) runs, over the same request's on the idle
server: ``--live`` streamed requests (8 tokens each, different questions) per phase, idle and
during a batch taking turns for ``--rounds`` rounds; the batch is cancelled after each phase.

Prints lines/s and tokens/s and the times to first token, writes
``bench/results/batch.json`` and ends with ``ratio_batch_tok_s_vs_llama_server=X.XX``
(medians; target >= 1.00) and ``ratio_live_ttft_during_batch=X.XX`` (medians; target <= 1.50).

    .venv/bin/python bench/batch.py [--rounds 2] [--lines 200] [--tokens 64] [--threads 2]
                                    [--part all|throughput|live] [--live 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chinwag.models import resolve_model
from chinwag.settings import Settings
from common import chinwag_server, llama_server, stream, write_results

SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
            "repeat_penalty": 1.0}
TOPICS = ["a lighthouse keeper", "a lost dog", "the first snow", "a village market",
          "an old clock", "a river crossing", "a baker at dawn", "a storm at sea"]


def requests(n: int, tokens: int) -> list[dict[str, Any]]:
    return [{"prompt": f"Write a short story about {TOPICS[i % len(TOPICS)]} (number {i}).\n",
             "max_tokens": tokens, "seed": 1000 + i, **SAMPLING}
            for i in range(n)]


def run_chinwag(bodies: list[dict[str, Any]], threads: int, n_ctx: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        source.write_text("".join(json.dumps({"custom_id": f"b{i}", "url": "/v1/completions",
                                              "body": body}) + "\n"
                                  for i, body in enumerate(bodies)))
        done = subprocess.run(
            [sys.executable, "-m", "chinwag", "batch", "run", str(source), "-o", str(out),
             "--parallel", "8", "--threads", str(threads), "--n-ctx", str(n_ctx),
             "--progress", "json"], capture_output=True, text=True, check=False,
            env={**os.environ, "CHINWAG_DB": str(Path(tmp) / "b.db")})
        if done.returncode != 0:
            sys.exit(f"chinwag batch run failed ({done.returncode}): {done.stderr[-2000:]}")
        last = json.loads(done.stdout.strip().splitlines()[-1])
        tokens = sum(json.loads(line)["response"]["body"]["usage"]["completion_tokens"]
                     for line in out.read_text().splitlines())
    seconds = float(last["elapsed_s"])
    return {"seconds": seconds, "tokens": tokens, "tok_s": tokens / seconds,
            "lines_s": len(bodies) / seconds}


def run_reference(url: str, bodies: list[dict[str, Any]]) -> dict[str, float]:
    def one(body: dict[str, Any]) -> int:
        reply = httpx.post(f"{url}/v1/completions", json=body, timeout=600)
        reply.raise_for_status()
        return int(reply.json()["usage"]["completion_tokens"])

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        tokens = sum(pool.map(one, bodies))
    seconds = time.monotonic() - started
    return {"seconds": seconds, "tokens": tokens, "tok_s": tokens / seconds,
            "lines_s": len(bodies) / seconds}


QUESTIONS = ["What is the capital of France?", "Name a colour of the sky.",
             "How many legs has a spider?", "What do bees make?", "Is ice cold or hot?",
             "What sound does a cat make?", "Which is bigger, a mouse or a horse?",
             "What do you call frozen rain?", "Where does the sun rise?",
             "What is two plus three?"]


def live_ttfts(url: str, n: int, offset: int) -> list[float]:
    """Time to first token of ``n`` streamed chat requests sent one after another."""
    found: list[float] = []
    for i in range(n):
        body = {"model": "assistant", "stream": True, "max_tokens": 8, "seed": i,
                "messages": [{"role": "user",
                              "content": QUESTIONS[(offset + i) % len(QUESTIONS)]}]}
        first, _, _, _ = stream(url, body, "/v1/chat/completions")
        if first is None:
            sys.exit("a live request got no text")
        found.append(first)
    return found


def batch_running(url: str, bodies: list[dict[str, Any]]) -> str:
    """Upload ``bodies`` as a batch, start it and wait until some of its lines are done
    (the engine is full of batch lines); its id."""
    data = "".join(json.dumps({"custom_id": f"b{i}", "method": "POST",
                               "url": "/v1/completions", "body": body}) + "\n"
                   for i, body in enumerate(bodies))
    file = httpx.post(f"{url}/v1/files", files={"file": ("in.jsonl", data.encode())},
                      data={"purpose": "batch"}, timeout=60).json()
    made = httpx.post(f"{url}/v1/batches", json={"input_file_id": file["id"],
                                                 "endpoint": "/v1/completions",
                                                 "completion_window": "24h"},
                      timeout=60).json()
    while True:
        got = httpx.get(f"{url}/v1/batches/{made['id']}", timeout=60).json()
        if got["status"] != "in_progress" and got["status"] != "validating":
            sys.exit(f"the batch ended before the live requests: {got}")
        if got["request_counts"]["completed"] >= 8:
            return str(made["id"])
        time.sleep(0.2)


def run_live(bodies: list[dict[str, Any]], rounds: int, n: int, threads: int,
             n_ctx: int) -> dict[str, Any]:
    idle: list[float] = []
    during: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, chinwag_server(
            "--parallel", "8", "--threads", str(threads), "--n-ctx", str(n_ctx),
            "--db", str(Path(tmp) / "b.db")) as url:
        live_ttfts(url, 2, 0)  # warm: the persona's prompt computed once, as in use
        for round_no in range(rounds):
            idle += live_ttfts(url, n, round_no * n)
            batch_id = batch_running(url, bodies)
            busy = live_ttfts(url, n, round_no * n)
            state = httpx.get(f"{url}/v1/batches/{batch_id}", timeout=60).json()
            if state["status"] != "in_progress":
                sys.exit(f"the batch ended during the live requests: {state['status']}")
            during += busy
            httpx.post(f"{url}/v1/batches/{batch_id}/cancel", timeout=120).raise_for_status()
            print(f"round {round_no + 1}: live ttft idle {statistics.median(idle[-n:]):.3f} s, "
                  f"during a batch {statistics.median(busy):.3f} s "
                  f"({state['request_counts']['completed']} batch lines done by then)",
                  flush=True)
    return {"idle_ttft_s": idle, "during_batch_ttft_s": during,
            "median_idle_ttft_s": statistics.median(idle),
            "median_during_batch_ttft_s": statistics.median(during),
            "ratio_live_ttft_during_batch": statistics.median(during) / statistics.median(idle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--part", choices=("all", "throughput", "live"), default="all")
    parser.add_argument("--live", type=int, default=8, help="live requests per phase")
    args = parser.parse_args()
    bodies = requests(args.lines, args.tokens)
    results: dict[str, Any] = {"args": vars(args)}
    if args.part in ("all", "throughput"):
        results.update(throughput(args, bodies))
    if args.part in ("all", "live"):
        live = run_live(bodies, args.rounds, args.live, args.threads, args.n_ctx)
        results["live"] = live
        print(f"live ttft: median idle {live['median_idle_ttft_s']:.3f} s, during a batch "
              f"{live['median_during_batch_ttft_s']:.3f} s")
    path = write_results("batch", results)
    print(f"wrote {path}")
    if "ratio_batch_tok_s_vs_llama_server" in results:
        print(f"ratio_batch_tok_s_vs_llama_server="
              f"{results['ratio_batch_tok_s_vs_llama_server']:.2f}")
    if "live" in results:
        print(f"ratio_live_ttft_during_batch="
              f"{results['live']['ratio_live_ttft_during_batch']:.2f}")


def throughput(args: argparse.Namespace, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """``chinwag batch run`` and llama-server with 8 clients, taking turns."""
    model = resolve_model(Settings())
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    for round_no in range(args.rounds):
        ours.append(run_chinwag(bodies, args.threads, args.n_ctx))
        with llama_server(model, "-t", str(args.threads), "-tb", str(args.threads), "-c",
                          str(args.n_ctx * 8), "-np", "8", "-ngl", "0") as url:
            theirs.append(run_reference(url, bodies))
        print(f"round {round_no + 1}: chinwag {ours[-1]['tok_s']:.1f} tok/s "
              f"({ours[-1]['lines_s']:.2f} lines/s) | llama-server {theirs[-1]['tok_s']:.1f} "
              f"tok/s ({theirs[-1]['lines_s']:.2f} lines/s)", flush=True)
    med = {name: {k: statistics.median(r[k] for r in runs) for k in ("tok_s", "lines_s")}
           for name, runs in (("chinwag", ours), ("llama_server", theirs))}
    ratio = med["chinwag"]["tok_s"] / med["llama_server"]["tok_s"]
    for name, m in med.items():
        print(f"{name}: median {m['tok_s']:.1f} tok/s, {m['lines_s']:.2f} lines/s")
    return {"chinwag": ours, "llama_server": theirs, "medians": med,
            "ratio_batch_tok_s_vs_llama_server": ratio}


if __name__ == "__main__":
    main()
