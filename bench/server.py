"""Serving speed: ``chinwag serve`` against llama.cpp's own server, in one run.

Streams ``--tokens`` tokens ``--runs`` times through each server's ``/v1/completions`` (SSE)
on the same model, prompt, sampling and threads, alternating the two. For each run: decode
tokens per second (first to last token, where the client receives them) and time to first
token (request sent to first token received).

Prints the figures, writes ``bench/results/server.json`` and ends with the lines
``ratio_tok_s_vs_llama_server=X.XX`` (chinwag over llama-server, medians; target >= 0.95) and
``ratio_ttft_vs_llama_server=X.XX`` (chinwag over llama-server, medians; target <= 1.2).

    .venv/bin/python bench/server.py [--runs 5] [--tokens 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chinwag.models import resolve_model
from chinwag.settings import Settings
from common import RESULTS, chinwag_server, llama_server, stream_timed, write_results

PROMPT = ("Once upon a time, in a small village called Limbo, there lived an old woman named "
          "Bertha. Every morning she")
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
            "repeat_penalty": 1.0}


def stream_once(url: str, model: str, tokens: int, seed: int) -> dict[str, float]:
    """One streamed completion; its decode tok/s and time to first token (client side)."""
    body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "seed": seed,
            "stream": True, "cache_prompt": False, **SAMPLING}
    return stream_timed(url, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    model = resolve_model(Settings())
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    with chinwag_server("--threads", str(args.threads), "--n-ctx", str(args.n_ctx)) as url, \
            llama_server(model, "-t", str(args.threads), "-tb", str(args.threads), "-c",
                         str(args.n_ctx), "-np", "1", "-ngl", "0") as ref:
        name = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
        stream_once(url, name, 16, 0)  # warm-up, not counted
        stream_once(ref, "ref", 16, 0)
        for i in range(args.runs):
            ours.append(stream_once(url, name, args.tokens, 100 + i))
            theirs.append(stream_once(ref, "ref", args.tokens, 100 + i))
            print(f"run {i + 1}: chinwag {ours[-1]['tok_s']:.1f} tok/s, ttft "
                  f"{ours[-1]['ttft_s'] * 1000:.0f} ms | llama-server {theirs[-1]['tok_s']:.1f} "
                  f"tok/s, ttft {theirs[-1]['ttft_s'] * 1000:.0f} ms", flush=True)

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    tok_ratio = med(ours, "tok_s") / med(theirs, "tok_s")
    ttft_ratio = med(ours, "ttft_s") / med(theirs, "ttft_s")
    path = write_results("server", {
        "benchmark": "server", "prompt": PROMPT, "sampling": SAMPLING, "tokens": args.tokens,
        "runs": args.runs, "threads": args.threads, "n_ctx": args.n_ctx,
        "chinwag": {"median_tok_s": med(ours, "tok_s"), "median_ttft_s": med(ours, "ttft_s"),
                    "runs": ours},
        "llama_server": {"median_tok_s": med(theirs, "tok_s"),
                         "median_ttft_s": med(theirs, "ttft_s"), "runs": theirs},
        "ratio_tok_s_vs_llama_server": tok_ratio, "ratio_ttft_vs_llama_server": ttft_ratio})
    print(f"chinwag      median {med(ours, 'tok_s'):.1f} tok/s, ttft "
          f"{med(ours, 'ttft_s') * 1000:.0f} ms")
    print(f"llama-server median {med(theirs, 'tok_s'):.1f} tok/s, ttft "
          f"{med(theirs, 'ttft_s') * 1000:.0f} ms")
    print(f"results: {path}")
    print(f"ratio_tok_s_vs_llama_server={tok_ratio:.2f}")
    print(f"ratio_ttft_vs_llama_server={ttft_ratio:.2f}")


if __name__ == "__main__":
    main()
