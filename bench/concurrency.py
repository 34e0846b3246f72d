"""Many people at once: ``chinwag serve`` against llama.cpp's own server, as an outside client
sees them, each server alone on the machine while it is measured.

Both run the embedded model with the same threads and 8 parallel sequences (chinwag
``--parallel 8 --n-ctx C``; llama-server ``-np 8 -c 8*C``, so each slot has C tokens).

0. The ceiling: ``llama-batched-bench`` (no HTTP, no sampling) at 1, 4 and 8 sequences.
1. Throughput: 1, 4 and 8 concurrent streams of ``--tokens`` tokens through ``/v1/completions``
   (SSE), aggregate completion tokens per second (all tokens received / wall time), twice:
   with each server's own defaults (the same prompt, ``temperature`` 0.8 and a seed per
   stream, nothing else) and with identical explicit sampling (``top_k`` 40, ``top_p`` 0.95,
   ``min_p`` 0.05, ``repeat_penalty`` 1.0). Each round starts one server, measures it, stops it,
   then does the same for the other (A B, then B A), ``--rounds`` times; medians are reported.
   For chinwag, ``/metrics`` splits each run's wall time per step into decoding
   (``llama_decode``), sampling, the rest of the step, and time between steps.
   chinwag runs with its defaults here (a RAM prompt cache, no ``--kv-cache-dir``).
2. Returning users: 16 users each holding a 6-turn chat through ``/v1/chat/completions``, each
   request carrying the whole history, turns interleaved round-robin; median time to first
   token of turns 2-6. llama-server runs with its defaults (RAM prompt cache on) and
   ``--no-jinja --chat-template gemma``.
3. Returning users after a restart: 16 other conversations hold turns 1-3, the server is
   stopped (SIGTERM) and started again (chinwag with the same ``--kv-cache-dir``, a fresh
   temporary folder for this run), then turn 4 of each; median time to first token of turn 4.
4. Abandoned requests (vLLM's ``test_request_cancellation``): ``--abandon`` streaming chat
   requests at once, each closed by its client after 0.5 s, then one fresh request, retried
   while it is refused: seconds from sending it to its answer.
5. Peak resident memory of each server (``VmHWM``).

Prints the figures, writes ``bench/results/concurrency.json`` and ends with the lines
``ratio_agg_tok_s_{1,4,8}=X.XX`` (defaults) and ``ratio_agg_tok_s_{1,4,8}_matched=X.XX``
(targets >= 1.00), ``ratio_ceiling_8_matched`` (chinwag's 8-stream rate over
``llama-batched-bench``'s; stretch target >= 0.95), ``ratio_ttft_returning`` (target <= 1.00),
``ratio_ttft_after_restart`` (target <= 0.35) and ``ratio_fresh_after_abandoned``; each
chinwag over llama-server unless said otherwise.

    .venv/bin/python bench/concurrency.py [--tokens 128] [--threads 2] [--n-ctx 2048]
        [--rounds 5] [--abandon 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chinwag.models import resolve_model
from chinwag.settings import load_settings
from common import (
    Served,
    batched_bench,
    chinwag_server,
    llama_server,
    peak_rss_mib,
    scrape,
    stream,
    write_results,
)

PROMPT = "Once upon a time, in a small village called Limbo, there lived"
SYSTEM = ("You are Bertha, an old villager who has lived all her life in the village of Limbo. "
          "You know every house, every family and every goat in Limbo, and you like to talk "
          "about the well, the mill, the inn run by Old Tom, the river and the weather. You "
          "answer travellers kindly, in a few short sentences, and you ask them questions "
          "about where they come from and where they are going. You never say that you are "
          "an assistant or a program: you are Bertha, and you are standing in the square.")
QUESTIONS = ["Hello! Who are you?", "What is this village called?",
             "Where can I sleep tonight?", "Tell me about the mill.",
             "Have you seen a lost goat?", "Goodbye, and thank you!"]
LEVELS = (1, 4, 8)
SAMPLINGS: dict[str, dict[str, float]] = {
    "defaults": {},
    "matched": {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0},
}
ENGINE = ("chinwag_engine_steps_total", "chinwag_engine_decode_seconds_total",
          "chinwag_engine_sample_seconds_total", "chinwag_engine_step_seconds_total",
          "chinwag_engine_batch_tokens_total")

Start = Callable[[], AbstractContextManager[Served]]


def throughput(url: str, model: str, streams: int, tokens: int,
               sampling: dict[str, float]) -> dict[str, float]:
    """``streams`` concurrent completions: aggregate completion tokens per second, the tokens
    and the wall time."""
    counts = [0] * streams

    def one(i: int) -> None:
        body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0.8,
                "seed": 100 + i, "stream": True, "stream_options": {"include_usage": True},
                **sampling}
        _, _, pieces, usage = stream(url, body, "/v1/completions")
        counts[i] = usage.get("completion_tokens", pieces)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"agg_tok_s": sum(counts) / wall, "tokens": sum(counts), "wall_s": wall}


def step_split(before: dict[str, float], after: dict[str, float], wall: float
               ) -> dict[str, float]:
    """Where chinwag's wall time went, per step, in ms, from its engine counters."""
    d = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in ENGINE}
    steps = d["chinwag_engine_steps_total"] or 1.0
    decode, sample = d["chinwag_engine_decode_seconds_total"], \
        d["chinwag_engine_sample_seconds_total"]
    step = d["chinwag_engine_step_seconds_total"]
    return {"steps": d["chinwag_engine_steps_total"],
            "tokens_per_step": d["chinwag_engine_batch_tokens_total"] / steps,
            "decode_ms": 1000 * decode / steps, "sample_ms": 1000 * sample / steps,
            "step_rest_ms": 1000 * (step - decode - sample) / steps,
            "between_steps_ms": 1000 * (wall - step) / steps}


def measure_throughput(name: str, url: Served, model: str, tokens: int
                       ) -> dict[str, dict[int, dict[str, float]]]:
    """Part 1 on a server that runs alone: every sampling at every level."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for label, sampling in SAMPLINGS.items():
        out[label] = {}
        for n in LEVELS:
            before = scrape(url) if name == "chinwag" else {}
            run = throughput(url, model, n, tokens, sampling)
            if name == "chinwag":
                run.update(step_split(before, scrape(url), run["wall_s"]))
            out[label][n] = run
            split = (f"; per step: decode {run['decode_ms']:.1f} ms, sampling "
                     f"{run['sample_ms']:.1f} ms, rest of step {run['step_rest_ms']:.1f} ms, "
                     f"between steps {run['between_steps_ms']:.1f} ms"
                     if "decode_ms" in run else "")
            print(f"  {name:12s} {label:8s} {n} stream(s): {run['agg_tok_s']:6.1f} tok/s "
                  f"({run['tokens']:.0f} tokens){split}", flush=True)
    return out


def alternating_throughput(starts: dict[str, Start], tokens: int, rounds: int
                           ) -> tuple[dict[str, dict[str, dict[int, dict[str, float]]]],
                                      dict[str, float]]:
    """Part 1: round after round, each server started alone, measured and stopped, in turn
    (A B, B A, ...); the median of each figure over the rounds, and each server's peak
    resident memory (MiB)."""
    runs: dict[str, list[dict[str, dict[int, dict[str, float]]]]] = {n: [] for n in starts}
    rss: dict[str, float] = {n: 0.0 for n in starts}
    for r in range(rounds):
        order = list(starts) if r % 2 == 0 else list(reversed(starts))
        print(f"round {r + 1}/{rounds}:", flush=True)
        for name in order:
            with starts[name]() as url:
                model = warm_up(url)
                runs[name].append(measure_throughput(name, url, model, tokens))
                rss[name] = max(rss[name], peak_rss_mib(url.pid))
    medians: dict[str, dict[str, dict[int, dict[str, float]]]] = {}
    for name, per_round in runs.items():
        medians[name] = {label: {n: {key: statistics.median(run[label][n][key]
                                                            for run in per_round)
                                     for key in per_round[0][label][n]}
                                 for n in LEVELS} for label in SAMPLINGS}
    return medians, rss


Chats = list[list[dict[str, str]]]


def new_chats(users: int) -> Chats:
    return [[{"role": "system", "content": SYSTEM}] for _ in range(users)]


def chat_turns(url: str, model: str, chats: Chats, turns: range,
               who: str) -> tuple[list[float], list[int]]:
    """Play ``turns`` of every chat, interleaved round-robin, each request carrying the whole
    history; the time to first token of each request (seconds) and its cached prompt tokens
    (``usage.prompt_tokens_details.cached_tokens`` where the server reports it, else -1)."""
    ttfts: list[float] = []
    cached: list[int] = []
    for turn in turns:
        for u, history in enumerate(chats):
            history.append({"role": "user", "content": f"({who} {u}) {QUESTIONS[turn]}"})
            body = {"model": model, "messages": history, "max_tokens": 48, "temperature": 0,
                    "stream": True, "stream_options": {"include_usage": True}}
            ttft, text, _, usage = stream(url, body, "/v1/chat/completions")
            history.append({"role": "assistant", "content": text.strip()})
            if ttft is not None:
                ttfts.append(ttft)
            details: object = usage.get("prompt_tokens_details")
            cached.append(details.get("cached_tokens", -1) if isinstance(details, dict) else -1)
    return ttfts, cached


def returning(start: Start) -> dict[str, Any]:
    """Part 2 on a server started for it."""
    with start() as url:
        model = warm_up(url)
        chats = new_chats(16)
        chat_turns(url, model, chats, range(1), "traveller")
        late, cached = chat_turns(url, model, chats, range(1, 6), "traveller")
        rss = peak_rss_mib(url.pid)
    print(f"  returning users: median ttft turns 2-6 {statistics.median(late) * 1000:.0f} ms, "
          f"median cached tokens {statistics.median(cached):.0f}", flush=True)
    return {"ttft_returning_s": late, "cached_tokens_returning": cached,
            "ttft_returning_median_s": statistics.median(late), "peak_rss_returning_mib": rss}


def after_restart(start: Start) -> dict[str, Any]:
    """Part 3: turns 1-3 of 16 chats on one instance, turn 4 on a fresh one."""
    rss: list[float] = []
    chats = new_chats(16)
    with start() as url:
        model = warm_up(url)
        chat_turns(url, model, chats, range(3), "pilgrim")
        rss.append(peak_rss_mib(url.pid))
    with start() as url:  # restarted
        model = warm_up(url)
        restarted, cached = chat_turns(url, model, chats, range(3, 4), "pilgrim")
        rss.append(peak_rss_mib(url.pid))
    print(f"  after a restart: median ttft turn 4 {statistics.median(restarted) * 1000:.0f} ms,"
          f" median cached tokens {statistics.median(cached):.0f}", flush=True)
    return {"ttft_after_restart_s": restarted, "cached_tokens_after_restart": cached,
            "ttft_after_restart_median_s": statistics.median(restarted),
            "peak_rss_after_restart_mib": max(rss)}


async def _abandon(url: str, model: str, n: int) -> None:
    """``n`` streaming chat requests at once, each closed by its client after 0.5 s."""
    body = {"model": model, "max_tokens": 256, "stream": True,
            "messages": [{"role": "user", "content": "Tell me a very long story about goats."}]}

    async def one(client: httpx.AsyncClient) -> None:
        async def read() -> None:
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
                async for _ in reply.aiter_bytes():
                    pass

        with suppress(TimeoutError, httpx.HTTPError):
            await asyncio.wait_for(read(), 0.5)

    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(one(client) for _ in range(n)))


def abandoned(start: Start, n: int) -> dict[str, float]:
    """Part 4 on a server started for it: seconds from the fresh request to its answer, and
    how many tries were refused."""
    with start() as url:
        model = warm_up(url)
        asyncio.run(_abandon(url, model, n))
        fresh = {"model": model, "max_tokens": 16, "temperature": 0,
                 "messages": [{"role": "user", "content": "Hello!"}]}
        sent = time.perf_counter()
        refused = 0
        while True:
            reply = httpx.post(f"{url}/v1/chat/completions", json=fresh, timeout=120)
            if reply.status_code == 200:
                break
            refused += 1
            time.sleep(0.25)
        seconds = time.perf_counter() - sent
        healthy = httpx.get(f"{url}/health", timeout=10).status_code
    print(f"  {n} abandoned requests, then a fresh one: answered after {seconds:.2f} s "
          f"({refused} tries refused first); /health {healthy}", flush=True)
    return {"fresh_after_abandoned_s": seconds, "refused_tries": refused}


def warm_up(url: str) -> str:
    """The server's model id, after one small request."""
    model: str = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
    stream(url, {"model": model, "prompt": "Hi", "max_tokens": 8, "stream": True},
           "/v1/completions")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--abandon", type=int, default=200)
    parser.add_argument("--parts", default="0,1,2,3,4", help="which parts to run")
    args = parser.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    model = resolve_model(load_settings())
    kv_dir = tempfile.mkdtemp(prefix="chinwag-bench-kv-")
    server_args = ("--threads", str(args.threads), "--n-ctx", str(args.n_ctx), "--parallel", "8")
    starts: dict[str, Start] = {
        "chinwag": lambda: chinwag_server(*server_args, "--kv-cache-dir", kv_dir),
        "llama-server": lambda: llama_server(
            model, "-t", str(args.threads), "-tb", str(args.threads), "-c",
            str(8 * args.n_ctx), "-np", "8", "-ngl", "0", "--no-jinja", "--chat-template",
            "gemma")}
    results: dict[str, Any] = {"tokens": args.tokens, "threads": args.threads,
                               "n_ctx": args.n_ctx, "rounds": args.rounds}
    ratios: dict[str, float] = {}
    if 0 in parts:
        ceiling = batched_bench(model, args.threads, 16, args.tokens, LEVELS)
        print("llama-batched-bench generation rate: " + ", ".join(
            f"{n} seq {v:.1f} tok/s" for n, v in ceiling.items()), flush=True)
        results["batched_bench_tg_tok_s"] = ceiling
    if 1 in parts:
        print(f"throughput, {args.rounds} rounds, each server alone in turn:", flush=True)
        # chinwag with its defaults here (RAM prompt cache only, as llama-server's)
        plain = {**starts, "chinwag": lambda: chinwag_server(*server_args)}
        agg, rss = alternating_throughput(plain, args.tokens, args.rounds)
        results["throughput"] = agg
        results["peak_rss_throughput_mib"] = rss
        print("peak RSS: " + ", ".join(f"{n} {v:.0f} MiB" for n, v in rss.items()))
        for label in SAMPLINGS:
            suffix = "" if label == "defaults" else f"_{label}"
            for n in LEVELS:
                ratios[f"ratio_agg_tok_s_{n}{suffix}"] = (
                    agg["chinwag"][label][n]["agg_tok_s"]
                    / agg["llama-server"][label][n]["agg_tok_s"])
            print(f"medians, {label}: " + "; ".join(
                f"{name} " + ", ".join(f"{n}: {agg[name][label][n]['agg_tok_s']:.1f}"
                                       for n in LEVELS) for name in starts), flush=True)
        if 0 in parts and 8 in results["batched_bench_tg_tok_s"]:
            ratios["ratio_ceiling_8_matched"] = (agg["chinwag"]["matched"][8]["agg_tok_s"]
                                                 / results["batched_bench_tg_tok_s"][8])
    for name, start in starts.items():
        if {2, 3, 4} & parts:
            print(f"{name}:", flush=True)
        if 2 in parts:
            results.setdefault(name, {}).update(returning(start))
        if 3 in parts:
            results.setdefault(name, {}).update(after_restart(start))
        if 4 in parts:
            results.setdefault(name, {}).update(abandoned(start, args.abandon))
    ours, theirs = results.get("chinwag", {}), results.get("llama-server", {})
    for key, ratio in (("ttft_returning_median_s", "ratio_ttft_returning"),
                       ("ttft_after_restart_median_s", "ratio_ttft_after_restart"),
                       ("fresh_after_abandoned_s", "ratio_fresh_after_abandoned")):
        if key in ours and key in theirs:
            ratios[ratio] = ours[key] / theirs[key]
    path = write_results("concurrency", {**results, **ratios})
    print(f"results: {path}")
    for key, value in ratios.items():
        print(f"{key}={value:.2f}")


if __name__ == "__main__":
    main()
