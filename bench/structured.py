"""Structured output speed: a JSON Schema enforced by a grammar, ``chinwag serve`` against
llama.cpp's own server, in one run.

Streams a completion constrained by ``SCHEMA`` ``--runs`` times through each server's
``/v1/completions`` (chinwag: ``response_format`` json_schema; llama-server: its
``json_schema`` field), same model, prompt, sampling, seed and threads, alternating the two.
For each run: decode tokens per second (first to last token, where the client receives them),
time to first token, seconds to the whole document (request sent to last token), and whether
the document validates against the schema. The two grammars differ between tokens: llama.cpp's
converter allows newlines and indents there, chinwag's one space (see
``chinwag.engine.sampler``), so llama-server's documents are longer; tokens per second compare
the samplers, seconds per document what a client waits.

Prints the figures, writes ``bench/results/structured.json`` and ends with the lines
``ratio_tok_s_vs_llama_server=X.XX`` and ``ratio_doc_s_vs_llama_server=X.XX`` (chinwag over
llama-server, medians).

    .venv/bin/python bench/structured.py [--runs 5] [--tokens 400] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import httpx
import jsonschema

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chinwag.models import resolve_model
from chinwag.settings import Settings
from common import RESULTS, chinwag_server, llama_server, stream_timed, write_results

PROMPT = "A JSON document describing three villagers of Limbo, their ages and their jobs:\n"
SCHEMA = {"type": "object", "properties": {"villagers": {
    "type": "array", "minItems": 3, "maxItems": 3, "items": {
        "type": "object", "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer"},
            "job": {"type": "string", "enum": ["baker", "smith", "farmer", "miller", "shepherd"]},
            "likes": {"type": "array", "items": {"type": "string", "maxLength": 20},
                      "maxItems": 3}},
        "required": ["name", "age", "job", "likes"]}}}, "required": ["villagers"]}
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
            "repeat_penalty": 1.0}


def stream_once(url: str, body: dict[str, object]) -> dict[str, float]:
    """One streamed completion: decode tok/s, time to first token and to the last (client
    side, ``doc_s``), and whether the whole text validates against ``SCHEMA`` (1.0 or 0.0)."""
    pieces: list[str] = []
    timed = stream_timed(url, body, pieces)
    text = "".join(pieces)
    try:
        jsonschema.validate(json.loads(text), SCHEMA)
        valid = 1.0
    except (ValueError, jsonschema.ValidationError):
        valid = 0.0
    return {**timed, "doc_s": timed["last_s"], "valid": valid, "chars": len(text)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    model = resolve_model(Settings())
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []

    def body(name: str, seed: int, tokens: int, native: bool) -> dict[str, object]:
        shape: dict[str, object] = {"json_schema": SCHEMA} if native else {
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "villagers", "schema": SCHEMA}}}
        return {"model": name, "prompt": PROMPT, "max_tokens": tokens, "seed": seed,
                "stream": True, "cache_prompt": False, **SAMPLING, **shape}

    with chinwag_server("--threads", str(args.threads), "--n-ctx", str(args.n_ctx)) as url, \
            llama_server(model, "-t", str(args.threads), "-tb", str(args.threads), "-c",
                         str(args.n_ctx), "-np", "1", "-ngl", "0") as ref:
        name = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
        stream_once(url, body(name, 0, 16, False))  # warm-up, not counted
        stream_once(ref, body("ref", 0, 16, True))
        for i in range(args.runs):
            ours.append(stream_once(url, body(name, 100 + i, args.tokens, False)))
            theirs.append(stream_once(ref, body("ref", 100 + i, args.tokens, True)))
            print(f"run {i + 1}: chinwag {ours[-1]['tok_s']:.1f} tok/s, "
                  f"{ours[-1]['pieces']:.0f} tokens in {ours[-1]['doc_s']:.2f} s, valid "
                  f"{ours[-1]['valid']:.0f} | llama-server {theirs[-1]['tok_s']:.1f} tok/s, "
                  f"{theirs[-1]['pieces']:.0f} tokens in {theirs[-1]['doc_s']:.2f} s, valid "
                  f"{theirs[-1]['valid']:.0f}", flush=True)

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    ratio = med(ours, "tok_s") / med(theirs, "tok_s")
    doc_ratio = med(ours, "doc_s") / med(theirs, "doc_s")
    path = write_results("structured", {
        "benchmark": "structured", "prompt": PROMPT, "schema": SCHEMA, "sampling": SAMPLING,
        "tokens": args.tokens, "runs": args.runs, "threads": args.threads,
        "chinwag": {"median_tok_s": med(ours, "tok_s"), "median_ttft_s": med(ours, "ttft_s"),
                    "median_doc_s": med(ours, "doc_s"), "valid": sum(r["valid"] for r in ours),
                    "runs": ours},
        "llama_server": {"median_tok_s": med(theirs, "tok_s"),
                         "median_ttft_s": med(theirs, "ttft_s"),
                         "median_doc_s": med(theirs, "doc_s"),
                         "valid": sum(r["valid"] for r in theirs), "runs": theirs},
        "ratio_tok_s_vs_llama_server": ratio, "ratio_doc_s_vs_llama_server": doc_ratio})
    for label, runs in (("chinwag     ", ours), ("llama-server", theirs)):
        print(f"{label} median {med(runs, 'tok_s'):.1f} tok/s, ttft "
              f"{med(runs, 'ttft_s') * 1000:.0f} ms, document {med(runs, 'doc_s'):.2f} s, "
              f"valid {sum(r['valid'] for r in runs):.0f}/{len(runs)}")
    print(f"results: {path}")
    print(f"ratio_tok_s_vs_llama_server={ratio:.2f}")
    print(f"ratio_doc_s_vs_llama_server={doc_ratio:.2f}")


if __name__ == "__main__":
    main()
