"""Batch throughput: ``chinwag batch run`` against llama.cpp's server fed the same requests by
8 concurrent clients (its best use), in one run.

200 lines (``--lines``) of raw completion, ``--tokens`` (64) tokens each, the same prompts,
sampling and seeds for both; chinwag with ``--parallel 8``, llama-server with ``-np 8``. Each
runs alone; they take turns for ``--rounds`` rounds. chinwag's time is from its model being
ready (the ``elapsed_s`` of ``--progress json``) to the last line written; llama-server's from
the first request sent to the last answer received.

Prints lines/s and tokens/s, writes ``bench/results/batch.json`` and ends with
``ratio_batch_tok_s_vs_llama_server=X.XX`` (medians; target >= 1.00).

    .venv/bin/python bench/batch.py [--rounds 2] [--lines 200] [--tokens 64] [--threads 2]
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
from common import llama_server, write_results

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args()
    bodies = requests(args.lines, args.tokens)
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
    path = write_results("batch", {"args": vars(args), "chinwag": ours, "llama_server": theirs,
                                   "medians": med, "ratio_batch_tok_s_vs_llama_server": ratio})
    print(f"wrote {path}")
    print(f"ratio_batch_tok_s_vs_llama_server={ratio:.2f}")


if __name__ == "__main__":
    main()
