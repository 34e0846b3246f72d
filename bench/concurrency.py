"""Many people at once: ``chinwag serve`` against llama.cpp's own server, in one run.

Both servers run the embedded model with the same threads and 8 parallel sequences (chinwag
``--parallel 8 --n-ctx C``; llama-server ``-np 8 -c 8*C``, so each slot has C tokens).

1. Throughput: 1, 4 and 8 concurrent streams of ``--tokens`` tokens through ``/v1/completions``
   (SSE); aggregate tokens per second (all tokens received / wall time). Both servers run side
   by side and take turns, ``--rounds`` times (the median is reported): this machine's speed
   drifts by 10-20% over minutes, which measuring one server after the other turned into
   ratios anywhere from 0.7 to 1.2.
2. Returning users: 16 users each holding a 6-turn chat through ``/v1/chat/completions``, each
   request carrying the whole history, turns interleaved round-robin; median time to first
   token of turns 2-6. llama-server runs with its defaults (RAM prompt cache on) and
   ``--no-jinja --chat-template gemma``.
3. Returning users after a restart: 16 other conversations hold turns 1-3, both servers are
   stopped (SIGTERM) and started again (chinwag with the same ``--kv-cache-dir``, a fresh
   temporary folder for this run), then turn 4 of each; median time to first token of turn 4.
4. Peak resident memory of each server (``VmHWM``, the largest of its processes).

Prints the figures, writes ``bench/results/concurrency.json`` and ends with the lines
``ratio_agg_tok_s_8``, ``ratio_agg_tok_s_4`` (targets >= 1.00), ``ratio_ttft_returning``
(target <= 1.00) and ``ratio_ttft_after_restart`` (target <= 0.35), each chinwag over
llama-server.

    .venv/bin/python bench/concurrency.py [--tokens 128] [--threads 2] [--n-ctx 2048] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chinwag.models import resolve_model
from chinwag.settings import load_settings
from common import Served, chinwag_server, llama_server, peak_rss_mib, stream, write_results

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


def throughput(url: str, model: str, streams: int, tokens: int) -> float:
    """Aggregate completion tokens per second of ``streams`` concurrent completions."""
    counts = [0] * streams

    def one(i: int) -> None:
        body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0.8,
                "seed": 100 + i, "stream": True, "stream_options": {"include_usage": True},
                "top_k": 40, "top_p": 0.95, "repeat_penalty": 1.0}
        _, _, pieces, usage = stream(url, body, "/v1/completions")
        counts[i] = usage.get("completion_tokens", pieces)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


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


Start = Callable[[], AbstractContextManager[Served]]


def interleaved_throughput(servers: dict[str, tuple[Served, str]], tokens: int,
                           rounds: int) -> dict[str, dict[int, float]]:
    """Part 1 on servers running side by side (the idle one uses no CPU), taking turns level
    by level for ``rounds`` rounds, so that drifts in the machine's speed hit both; the median
    aggregate tok/s of each server at each level."""
    runs: dict[str, dict[int, list[float]]] = {name: {1: [], 4: [], 8: []} for name in servers}
    for r in range(rounds):
        for n in (1, 4, 8):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                url, model = servers[name]
                runs[name][n].append(throughput(url, model, n, tokens))
    for name in servers:
        print(f"{name}: " + ", ".join(f"{n} stream(s) {statistics.median(v):.1f} tok/s"
                                      for n, v in runs[name].items()), flush=True)
    return {name: {n: statistics.median(v) for n, v in levels.items()}
            for name, levels in runs.items()}


def returning(url: Served, model: str) -> dict[str, object]:
    """Part 2 on a running server."""
    chats = new_chats(16)
    chat_turns(url, model, chats, range(1), "traveller")
    late, cached = chat_turns(url, model, chats, range(1, 6), "traveller")
    print(f"  returning users: median ttft turns 2-6 {statistics.median(late) * 1000:.0f} ms, "
          f"median cached tokens {statistics.median(cached):.0f}", flush=True)
    return {"ttft_returning_s": late, "cached_tokens_returning": cached,
            "ttft_returning_median_s": statistics.median(late)}


def after_restart(start: Start) -> dict[str, object]:
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = resolve_model(load_settings())
    kv_dir = tempfile.mkdtemp(prefix="chinwag-bench-kv-")
    starts: dict[str, Start] = {
        "chinwag": lambda: chinwag_server(
            "--threads", str(args.threads), "--n-ctx", str(args.n_ctx), "--parallel", "8",
            "--kv-cache-dir", kv_dir),
        "llama-server": lambda: llama_server(
            model, "-t", str(args.threads), "-tb", str(args.threads), "-c",
            str(8 * args.n_ctx), "-np", "8", "-ngl", "0", "--no-jinja", "--chat-template",
            "gemma")}
    print(f"chinwag serve --parallel 8 --kv-cache-dir {kv_dir}; llama-server -np 8; "
          f"throughput, {args.rounds} rounds taking turns:", flush=True)
    results: dict[str, dict[str, object]] = {}
    rss: dict[str, float] = {}
    with starts["chinwag"]() as ours_url, starts["llama-server"]() as ref_url:
        served = {"chinwag": (ours_url, warm_up(ours_url)),
                  "llama-server": (ref_url, warm_up(ref_url))}
        agg = interleaved_throughput(served, args.tokens, args.rounds)
        for name, (url, name_of_model) in served.items():
            print(f"{name}:", flush=True)
            results[name] = {"agg_tok_s": agg[name], **returning(url, name_of_model)}
            rss[name] = peak_rss_mib(url.pid)
    for name, start in starts.items():
        print(f"{name}, restarted after turn 3:", flush=True)
        part3 = after_restart(start)
        results[name].update(part3)
        results[name]["peak_rss_mib"] = max(rss[name], float(part3["peak_rss_after_restart_mib"]))  # type: ignore[arg-type]
    ours, theirs = results["chinwag"], results["llama-server"]
    ratios = {f"ratio_agg_tok_s_{n}": ours["agg_tok_s"][n] / theirs["agg_tok_s"][n]  # type: ignore[index]
              for n in (1, 4, 8)}
    for part in ("returning", "after_restart"):
        ratios[f"ratio_ttft_{part}"] = (ours[f"ttft_{part}_median_s"]  # type: ignore[operator]
                                        / theirs[f"ttft_{part}_median_s"])
    path = write_results("concurrency", {"tokens": args.tokens, "threads": args.threads,
                                         "n_ctx": args.n_ctx, "rounds": args.rounds,
                                         "chinwag": ours,
                                         "llama_server": theirs, **ratios})
    print(f"peak RSS: chinwag {ours['peak_rss_mib']:.0f} MiB, "
          f"llama-server {theirs['peak_rss_mib']:.0f} MiB")
    print(f"results: {path}")
    print(f"ratio_agg_tok_s_1={ratios['ratio_agg_tok_s_1']:.2f}")
    print(f"ratio_agg_tok_s_8={ratios['ratio_agg_tok_s_8']:.2f}")
    print(f"ratio_agg_tok_s_4={ratios['ratio_agg_tok_s_4']:.2f}")
    print(f"ratio_ttft_returning={ratios['ratio_ttft_returning']:.2f}")
    print(f"ratio_ttft_after_restart={ratios['ratio_ttft_after_restart']:.2f}")


if __name__ == "__main__":
    main()
