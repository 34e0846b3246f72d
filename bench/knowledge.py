"""Knowledge: answering about a web page, and searching a fact collection, in one run.

1. A question about a 2,000-word page, through ``chinwag serve``'s ``/v1/chat/completions``
   with the villager persona and the page's URL at the start of the message: time to first
   token covers fetching, extracting (trafilatura), selecting the chunks that fit the persona's
   budget (BM25) and answering. Then the follow-up question of the same chat (the history sent
   again, as OpenAI clients do), which must reuse the KV cache: its ``cached_tokens`` are
   reported.

   Reference: what a user of llama.cpp's own server does without chinwag: fetch the page
   (httpx), extract its text (trafilatura, the same library), paste all of it before the
   question into ``/v1/chat/completions``, with llama-server's prompt cache on (its default)
   for the follow-up. Its clock also starts before the fetch.

   Each round serves a page with different words (the round's number in every paragraph), so
   no round finds the previous one's prompt in a cache. The two servers take turns, one
   request at a time; medians over ``--rounds``.

2. Retrieval over a 10,000-chunk collection in a real ``chinwag.db``: FTS5 (BM25) alone, and
   hybrid (BM25 and all-MiniLM-L6-v2 embeddings, reciprocal rank fusion), median latency of
   ``--queries`` searches. The embedding of the chunks is done once, off the clock.

Prints the figures, writes ``bench/results/knowledge.json`` and ends with
``ratio_ttft_page_vs_llama_server=X.XX`` and ``ratio_ttft_follow_up_vs_llama_server=X.XX``
(chinwag over the reference, medians).

    .venv/bin/python bench/knowledge.py [--rounds 3] [--threads 2] [--chunks 10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import trafilatura

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chinwag.models import resolve_model
from chinwag.settings import Settings
from common import chinwag_server, llama_server, stream, write_results

TOPICS = ["mill", "river", "goats", "market", "bridge", "church", "school", "harvest",
          "weather", "inn", "well", "forest", "bees", "baker", "smithy", "festival"]
QUESTION = "Who built the stone bridge, and when?"
FOLLOW_UP = "What does the bridge still carry?"
SAMPLING = {"temperature": 0.0, "max_tokens": 16}


def page_html(round_no: int) -> bytes:
    """About 2,000 words of prose in sixteen sections; one paragraph names the bridge's
    builder. ``round_no`` is in every paragraph, so each round's page is new."""
    sections = []
    for topic in TOPICS:
        paragraphs = []
        for i in range(3):
            paragraphs.append(
                f"<p>In round {round_no}, the {topic} of Limbo was described for the {i + 1}th "
                f"time. People in the village talk about the {topic} in the mornings, and the "
                f"children learn its story at school, because the {topic} has been part of "
                f"village life for as long as anyone remembers.</p>")
        if topic == "bridge":
            paragraphs[1] = (f"<p>In round {round_no}: the stone bridge over the river was "
                             "built by Ada Quarry in 1802, and it still carries the carts to "
                             "the market every Thursday.</p>")
        sections.append(f"<h2>The {topic}</h2>" + "".join(paragraphs))
    return ("<!doctype html><html><head><title>All about Limbo</title></head><body>"
            "<nav>Home | About | Shop</nav><article>" + "".join(sections)
            + "</article><footer>Copyright 2026</footer></body></html>").encode()


class Pages(BaseHTTPRequestHandler):
    """``/page/N``: the page of round N."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = page_html(int(self.path.rsplit("/", 1)[-1]))
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def page_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def chat(url: str, model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    """One streamed chat completion: seconds to the first text, the text, the usage."""
    first, text, _, usage = stream(url, {"model": model, "messages": messages, "stream": True,
                                         "stream_options": {"include_usage": True},
                                         **SAMPLING}, "/v1/chat/completions")
    return {"ttft_s": first, "text": text, "usage": usage}


def chinwag_round(url: str, page: str) -> dict[str, Any]:
    """The question with the page's URL, then the follow-up; the clock starts at the request."""
    asked = [{"role": "user", "content": f"{page} {QUESTION}"}]
    first = chat(url, "villager", asked)
    follow = chat(url, "villager", [*asked, {"role": "assistant", "content": first["text"]},
                                    {"role": "user", "content": FOLLOW_UP}])
    return {"page": first, "follow_up": follow}


def reference_round(url: str, page: str, system: str) -> dict[str, Any]:
    """The same, done by hand against llama-server: fetch, extract, paste it all; the clock
    starts before the fetch."""
    start = time.perf_counter()
    html = httpx.get(page, timeout=30).content
    text = trafilatura.extract(html) or ""
    extracted = time.perf_counter() - start
    asked = [{"role": "system", "content": f"{system}\n\nThe page {page}:\n{text}"},
             {"role": "user", "content": QUESTION}]
    first = chat(url, "ref", asked)
    first["ttft_s"] += extracted
    follow = chat(url, "ref", [*asked, {"role": "assistant", "content": first["text"]},
                               {"role": "user", "content": FOLLOW_UP}])
    return {"page": first, "follow_up": follow}


def retrieval(chunks: int, queries: int) -> dict[str, Any]:
    """Median search latency over a ``chunks``-chunk collection: FTS5 alone and hybrid."""
    from chinwag.knowledge.collections import Collections
    from chinwag.knowledge.embeddings import Embedder
    from chinwag.store import Store

    words = ["goat", "mill", "river", "bread", "cheese", "stone", "bridge", "rain", "wool",
             "bee", "honey", "inn", "ale", "cart", "market", "well", "bell", "oak", "smith"]
    embedder = Embedder()
    out: dict[str, Any] = {"chunks": chunks, "queries": queries}
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "chinwag.db") as store:
        collections = Collections(store)
        per_document = 10
        for d in range(chunks // per_document):
            paragraphs = [" ".join(words[(d * 7 + p * 3 + k) % len(words)] for k in range(70))
                          + f" record {d}-{p}." for p in range(per_document)]  # one chunk each
            collections.add("bench", f"record {d}", "\n\n".join(paragraphs))
        start = time.perf_counter()
        embedded = collections.embed("bench", embedder)
        out["embed_all_s"] = time.perf_counter() - start
        out["embedded_chunks"] = embedded
        asks = [f"{words[i % len(words)]} and {words[(i * 5) % len(words)]} near the "
                f"{words[(i * 11) % len(words)]}" for i in range(queries)]
        for name, used in (("fts5", None), ("hybrid", embedder)):
            collections.search("bench", asks[0], 4, embedder=used)  # warm-up
            times = []
            for ask in asks:
                t = time.perf_counter()
                hits = collections.search("bench", ask, 4, embedder=used)
                times.append(time.perf_counter() - t)
                assert hits, ask
            out[f"{name}_median_ms"] = statistics.median(times) * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    model = resolve_model(Settings())
    from chinwag.chat.persona import get_persona

    system = get_persona("villager").system_text()
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    with page_server() as pages, \
            chinwag_server("--threads", str(args.threads), "--n-ctx", str(args.n_ctx),
                           "--fetch-allow-private", "127.0.0.1/32") as url, \
            llama_server(model, "-t", str(args.threads), "-tb", str(args.threads), "-c",
                         str(args.n_ctx), "-np", "1", "-ngl", "0") as ref:
        chinwag_round(url, f"{pages}/page/0")  # warm-up, not counted
        reference_round(ref, f"{pages}/page/0", system)
        for i in range(1, args.rounds + 1):
            ours.append(chinwag_round(url, f"{pages}/page/{i}"))
            theirs.append(reference_round(ref, f"{pages}/page/{1000 + i}", system))
            o, t = ours[-1], theirs[-1]
            print(f"round {i}: chinwag ttft {o['page']['ttft_s'] * 1000:.0f} ms "
                  f"({o['page']['usage'].get('prompt_tokens')} prompt tokens), follow-up "
                  f"{o['follow_up']['ttft_s'] * 1000:.0f} ms (cached "
                  f"{o['follow_up']['usage'].get('prompt_tokens_details', {}).get('cached_tokens')}"
                  f") | llama-server ttft {t['page']['ttft_s'] * 1000:.0f} ms "
                  f"({t['page']['usage'].get('prompt_tokens')} prompt tokens), follow-up "
                  f"{t['follow_up']['ttft_s'] * 1000:.0f} ms", flush=True)

    def med(runs: list[dict[str, Any]], step: str) -> float:
        return statistics.median(r[step]["ttft_s"] for r in runs)

    cached = [r["follow_up"]["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0)
              for r in ours]
    found = sum("Ada" in r["page"]["text"] or "1802" in r["page"]["text"] for r in ours)
    searched = retrieval(args.chunks, args.queries)
    print(f"retrieval over {searched['chunks']} chunks: fts5 {searched['fts5_median_ms']:.1f} ms,"
          f" hybrid {searched['hybrid_median_ms']:.1f} ms (embedding all chunks took "
          f"{searched['embed_all_s']:.0f} s, off the clock)")
    page_ratio = med(ours, "page") / med(theirs, "page")
    follow_ratio = med(ours, "follow_up") / med(theirs, "follow_up")
    path = write_results("knowledge", {
        "benchmark": "knowledge", "question": QUESTION, "follow_up": FOLLOW_UP,
        "sampling": SAMPLING, "rounds": args.rounds, "threads": args.threads,
        "n_ctx": args.n_ctx,
        "chinwag": {"median_ttft_page_s": med(ours, "page"),
                    "median_ttft_follow_up_s": med(ours, "follow_up"),
                    "follow_up_cached_tokens": cached, "answers_naming_the_builder": found,
                    "rounds": ours},
        "llama_server": {"median_ttft_page_s": med(theirs, "page"),
                         "median_ttft_follow_up_s": med(theirs, "follow_up"), "rounds": theirs},
        "retrieval": searched,
        "ratio_ttft_page_vs_llama_server": page_ratio,
        "ratio_ttft_follow_up_vs_llama_server": follow_ratio})
    print(f"chinwag      median ttft page {med(ours, 'page') * 1000:.0f} ms, follow-up "
          f"{med(ours, 'follow_up') * 1000:.0f} ms, follow-up cached tokens {cached}")
    print(f"llama-server median ttft page {med(theirs, 'page') * 1000:.0f} ms, follow-up "
          f"{med(theirs, 'follow_up') * 1000:.0f} ms")
    print(f"results: {path}")
    print(f"ratio_ttft_page_vs_llama_server={page_ratio:.2f}")
    print(f"ratio_ttft_follow_up_vs_llama_server={follow_ratio:.2f}")


if __name__ == "__main__":
    main()
