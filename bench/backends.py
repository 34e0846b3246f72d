"""The cost of chinwag as a front: ``chinwag serve --llm remote.yaml`` (the ``openai`` backend)
in front of llama.cpp's server, against the same llama.cpp server used directly, in one run.

This is the scale-out path (chinwag in front, another engine behind) measured on one machine:
the client streams ``--tokens`` tokens ``--runs`` times from ``/v1/completions`` of each,
alternating. Both take the same 2 cores here, so the front's own work shows up in full.

Prints the figures, writes ``bench/results/backends.json`` and ends with
``ratio_front_tok_s_vs_llama_server=X.XX`` (front over direct, medians; 1.00 = no cost) and
``ratio_front_ttft_vs_llama_server=X.XX``.

    .venv/bin/python bench/backends.py [--runs 5] [--tokens 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chinwag.models import resolve_model
from chinwag.settings import Settings
from common import chinwag_server, llama_server, stream_timed, write_results

PROMPT = ("Once upon a time, in a small village called Limbo, there lived an old woman named "
          "Bertha. Every morning she")
SAMPLING = {"temperature": 0.8, "top_p": 0.95}


def stream_once(url: str, model: str, tokens: int, seed: int) -> dict[str, float]:
    """One streamed completion: decode tok/s (first to last piece) and time to first piece,
    both seen by the client."""
    body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "seed": seed,
            "stream": True, **SAMPLING}
    return stream_timed(url, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model = resolve_model(Settings())
    front: list[dict[str, float]] = []
    direct: list[dict[str, float]] = []
    with llama_server(model, "-t", str(args.threads), "-c", "4096", "-np", "2",
                      "-ngl", "0") as ref, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "remote.yaml"
        config.write_text(f"backend: openai\nmodel_id: remote\nbase_url: {ref}/v1\n"
                          f"api: completions\ncontext_length: 2048\n")
        with chinwag_server("--llm", str(config)) as url:
            stream_once(url, "remote", 16, 0)  # warm-up, not counted
            stream_once(ref, "ref", 16, 0)
            for i in range(args.runs):
                front.append(stream_once(url, "remote", args.tokens, 100 + i))
                direct.append(stream_once(ref, "ref", args.tokens, 100 + i))
                print(f"run {i + 1}: front {front[-1]['tok_s']:.1f} tok/s, ttft "
                      f"{front[-1]['ttft_s'] * 1000:.0f} ms | direct {direct[-1]['tok_s']:.1f} "
                      f"tok/s, ttft {direct[-1]['ttft_s'] * 1000:.0f} ms", flush=True)

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    tok_ratio = med(front, "tok_s") / med(direct, "tok_s")
    ttft_ratio = med(front, "ttft_s") / med(direct, "ttft_s")
    path = write_results("backends", {
        "benchmark": "backends", "prompt": PROMPT, "sampling": SAMPLING,
        "tokens": args.tokens, "runs": args.runs, "threads": args.threads,
        "front": {"median_tok_s": med(front, "tok_s"), "median_ttft_s": med(front, "ttft_s"),
                  "runs": front},
        "llama_server": {"median_tok_s": med(direct, "tok_s"),
                         "median_ttft_s": med(direct, "ttft_s"), "runs": direct},
        "ratio_front_tok_s_vs_llama_server": tok_ratio,
        "ratio_front_ttft_vs_llama_server": ttft_ratio})
    print(f"chinwag front median {med(front, 'tok_s'):.1f} tok/s, ttft "
          f"{med(front, 'ttft_s') * 1000:.0f} ms")
    print(f"llama-server  median {med(direct, 'tok_s'):.1f} tok/s, ttft "
          f"{med(direct, 'ttft_s') * 1000:.0f} ms")
    print(f"results: {path}")
    print(f"ratio_front_tok_s_vs_llama_server={tok_ratio:.2f}")
    print(f"ratio_front_ttft_vs_llama_server={ttft_ratio:.2f}")


if __name__ == "__main__":
    main()
