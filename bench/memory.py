"""Long conversations with memory: time to first token late in a 30-turn chat, in one run
against llama.cpp's own server.

chinwag: a ``Chatbot`` on the embedded model with a conversation database (a real SQLite file)
and the villager persona's memory policy (``--policy``, default ``summary`` with a window of 25
messages, token budget on top); summaries are written between turns, off the clock, as the
server and the CLI do after a reply. Each turn's time to first token is measured from sending
the message to the first piece of the answer, and its prompt tokens come from the model's usage.

Reference: llama-server on the same model, threads and sampling, answering the same user
messages through ``/v1/chat/completions`` (SSE) with the whole history sent each turn, as an
OpenAI client does, and its prompt cache on (its default), so only the new tokens of each turn
are computed.

Prints a line per turn, writes ``bench/results/memory.json`` and ends with
``ttft_turns_20_30_ms=N`` (chinwag's median over turns 20-30) and
``ratio_ttft_turns_20_30_vs_llama_server=X.XX`` (chinwag over llama-server, medians).

    .venv/bin/python bench/memory.py [--turns 30] [--max-tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chinwag.backends.llamacpp import LlamaCppBackend
from chinwag.chat import Chatbot, get_persona
from chinwag.chat.memory import MemoryPolicy
from chinwag.models import resolve_model
from chinwag.settings import Settings
from chinwag.store import Store
from common import llama_server, stream, write_results

MESSAGES = [
    "Hello! My name is Zorblax and I come from the mountains.",
    "What is this village called?", "Do you live here alone?", "What do you grow?",
    "Is there an inn nearby?", "I lost my goat on the road. Have you seen it?",
    "What does the miller sell?", "Tell me about the old well.", "Who keeps the bees?",
    "Is it going to rain tonight?", "What do people eat here in winter?",
    "Can you teach me a local song?", "Where does the river go?", "Who is the mayor?",
    "What was the village like when you were young?",
]
SAMPLING = {"temperature": 0.0, "repeat_penalty": 1.1, "top_k": 40, "top_p": 0.95}


def chinwag_turns(model: Path, turns: int, max_tokens: int, threads: int, n_ctx: int,
                  policy: str) -> list[dict[str, float]]:
    """Run the conversation through ``Chatbot``; per turn: ttft_s, prompt_tokens."""
    backend = LlamaCppBackend(model, n_ctx=n_ctx, n_threads=threads)
    persona = get_persona("villager")
    persona = persona.model_copy(update={"memory": MemoryPolicy(policy=policy)})  # type: ignore[arg-type]
    out: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        bot = Chatbot(backend, persona, store=store, max_tokens=max_tokens, **SAMPLING)
        for turn in range(turns):
            start = time.perf_counter()
            first = None
            for _ in bot.send(MESSAGES[turn % len(MESSAGES)]):
                first = first or time.perf_counter()
            assert bot.last is not None
            out.append({"ttft_s": (first or time.perf_counter()) - start,
                        "prompt_tokens": bot.last.usage.prompt_tokens})
            if bot.summary_due():
                bot.update_summary()  # after the reply, as the server and the CLI do
        out[-1]["summary"] = bot.summary  # type: ignore[assignment]
    backend.close()
    return out


def reference_turns(url: str, turns: int, max_tokens: int) -> list[dict[str, float]]:
    """The same messages through llama-server's chat API, the whole history every turn."""
    persona = get_persona("villager")
    history = [{"role": m.role, "content": m.content} for m in persona.preamble()]
    out: list[dict[str, float]] = []
    for turn in range(turns):
        history.append({"role": "user", "content": MESSAGES[turn % len(MESSAGES)]})
        body = {"messages": history, "max_tokens": max_tokens, "stream": True,
                "stream_options": {"include_usage": True}, **SAMPLING}
        ttft, text, _, usage = stream(url, body, "/v1/chat/completions")
        history.append({"role": "assistant", "content": text.strip()})
        out.append({"ttft_s": ttft if ttft is not None else float("nan"),
                    "prompt_tokens": usage.get("prompt_tokens", 0)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--policy", default="summary",
                        choices=["window", "token_budget", "summary"])
    args = parser.parse_args()
    model = resolve_model(Settings())
    ours = chinwag_turns(model, args.turns, args.max_tokens, args.threads, args.n_ctx,
                         args.policy)
    with llama_server(model, "-t", str(args.threads), "-tb", str(args.threads), "-c",
                      str(args.n_ctx), "-np", "1", "-ngl", "0") as ref:
        theirs = reference_turns(ref, args.turns, args.max_tokens)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True), start=1):
        print(f"turn {i:2d}: chinwag ttft {a['ttft_s'] * 1000:6.0f} ms, "
              f"{a['prompt_tokens']:5.0f} prompt tokens | llama-server ttft "
              f"{b['ttft_s'] * 1000:6.0f} ms, {b['prompt_tokens']:5.0f} prompt tokens")
    late = slice(19, 30)
    ours_ms = statistics.median(t["ttft_s"] for t in ours[late]) * 1000
    theirs_ms = statistics.median(t["ttft_s"] for t in theirs[late]) * 1000
    path = write_results("memory", {
        "turns": args.turns, "max_tokens": args.max_tokens, "threads": args.threads,
        "n_ctx": args.n_ctx, "policy": args.policy,
        "chinwag": ours, "llama_server": theirs,
        "ttft_turns_20_30_ms": ours_ms, "llama_server_ttft_turns_20_30_ms": theirs_ms,
        "ratio_ttft_turns_20_30_vs_llama_server": ours_ms / theirs_ms,
    })
    print(f"summary at the end:\n{ours[-1].get('summary', '')}")
    print(f"llama-server median ttft turns 20-30: {theirs_ms:.0f} ms")
    print(f"results: {path}")
    print(f"ttft_turns_20_30_ms={ours_ms:.0f}")
    print(f"ratio_ttft_turns_20_30_vs_llama_server={ours_ms / theirs_ms:.2f}")


if __name__ == "__main__":
    main()
