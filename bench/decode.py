"""Single-stream decode speed: chinwag's engine against llama.cpp's own server, in one run.

Streams ``--tokens`` tokens ``--runs`` times through each, on the same model, prompt, sampling
and threads, alternating the two so that noise on this shared machine hits both alike. Speed is
measured where the tokens arrive (chinwag: the backend's event stream; llama-server: its SSE
stream over HTTP on 127.0.0.1), from the first token to the last: decode tokens per second.

Prints a table, writes ``bench/results/decode.json`` and ends with the line
``ratio_vs_llama_server=X.XX`` (median chinwag tok/s over median llama-server tok/s).

    .venv/bin/python bench/decode.py [--runs 5] [--tokens 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chinwag.backends.llamacpp import LlamaCppBackend
from chinwag.models import resolve_model
from chinwag.settings import Settings
from chinwag.types import Done, SamplingParams
from common import RESULTS, llama_server, write_results

PROMPT = ("Once upon a time, in a small village called Limbo, there lived an old woman named "
          "Bertha. Every morning she")
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}


def rate(times: list[float]) -> float:
    """Tokens per second between the first and the last token."""
    return (len(times) - 1) / (times[-1] - times[0])


def run_chinwag(backend: LlamaCppBackend, tokens: int, seed: int) -> dict[str, float]:
    params = SamplingParams(max_tokens=tokens, seed=seed, **SAMPLING)  # type: ignore[arg-type]
    start = time.perf_counter()
    stamps: list[float] = []
    done = None
    for event in backend.generate(PROMPT, params):
        if isinstance(event, Done):
            done = event
        else:
            stamps.append(time.perf_counter())
    assert done is not None
    return {"tok_s": rate(stamps), "ttft_s": stamps[0] - start,
            "tokens": done.usage.completion_tokens}


def run_server(url: str, tokens: int, seed: int) -> dict[str, float]:
    body = {"prompt": PROMPT, "n_predict": tokens, "seed": seed, "stream": True,
            "cache_prompt": False, "repeat_penalty": SAMPLING["repeat_penalty"],
            **{k: v for k, v in SAMPLING.items() if k != "repeat_penalty"}}
    start = time.perf_counter()
    stamps: list[float] = []
    n = 0
    with httpx.stream("POST", f"{url}/completion", json=body, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("stop"):
                n = int(chunk.get("tokens_predicted", n))
                continue
            stamps.append(time.perf_counter())
    return {"tok_s": rate(stamps), "ttft_s": stamps[0] - start, "tokens": n or len(stamps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    model = resolve_model(Settings())
    backend = LlamaCppBackend(model, n_ctx=args.n_ctx, n_threads=args.threads)
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    with llama_server(model, "-t", str(args.threads), "-tb", str(args.threads), "-c",
                      str(args.n_ctx), "-np", "1", "-ngl", "0") as url:
        run_chinwag(backend, 16, 0)  # warm-up, not counted
        run_server(url, 16, 0)
        for i in range(args.runs):
            ours.append(run_chinwag(backend, args.tokens, 100 + i))
            theirs.append(run_server(url, args.tokens, 100 + i))
            print(f"run {i + 1}: chinwag {ours[-1]['tok_s']:.1f} tok/s "
                  f"({ours[-1]['tokens']:.0f} tokens), llama-server {theirs[-1]['tok_s']:.1f} "
                  f"tok/s ({theirs[-1]['tokens']:.0f} tokens)", flush=True)
    backend.close()
    med_ours = statistics.median(r["tok_s"] for r in ours)
    med_theirs = statistics.median(r["tok_s"] for r in theirs)
    ratio = med_ours / med_theirs
    # Each run of one is next to a run of the other, so the noise of this shared machine is
    # alike within a pair: the median of the pairs' ratios is a steadier second figure.
    paired = statistics.median(a["tok_s"] / b["tok_s"] for a, b in zip(ours, theirs, strict=True))
    result = {
        "benchmark": "decode", "prompt": PROMPT, "sampling": SAMPLING, "tokens": args.tokens,
        "runs": args.runs, "threads": args.threads, "n_ctx": args.n_ctx, "model": str(model),
        "chinwag": {"median_tok_s": med_ours, "median_ttft_s":
                    statistics.median(r["ttft_s"] for r in ours), "runs": ours},
        "llama_server": {"median_tok_s": med_theirs, "median_ttft_s":
                         statistics.median(r["ttft_s"] for r in theirs), "runs": theirs},
        "ratio_vs_llama_server": ratio,
        "paired_ratio_median": paired,
    }
    path = write_results("decode", result)
    print(f"chinwag      median {med_ours:.1f} tok/s")
    print(f"llama-server median {med_theirs:.1f} tok/s")
    print(f"median of paired ratios {paired:.2f}")
    print(f"results: {path}")
    print(f"ratio_vs_llama_server={ratio:.2f}")


if __name__ == "__main__":
    main()
