"""Many people on one real server: twenty users interleaving turns, the KV cache across a
restart (``--kv-cache-dir``), and its counters in ``/metrics``."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

TEST_PERSONAS = Path(__file__).parent.parent / "data" / "personas"

WORDS = ["Vorbik", "Talmune", "Skreeva", "Quoppel", "Durnast", "Mirrowen", "Gaskolt", "Pellizar",
         "Wunderbax", "Yistrel", "Hobrangle", "Cazzimir", "Fennoway", "Ulthrak", "Brizzen",
         "Ostravel", "Klimbert", "Zanfoil", "Rextopod", "Jubbleson"]


def test_twenty_users_interleaving_turns_never_see_each_others_text(
        make_server: Callable[..., Any]) -> None:
    """Twenty users, each telling the ``recall`` clerk a code word then asking for it, all at
    once on 8 slots: each stored conversation holds only its own user's words, and no answer
    contains another user's word (a sequence mixed up with another one, a slot's cells or a
    cached state restored for the wrong conversation would show it)."""
    server = make_server("--parallel", "8", "--max-queue", "64",
                         env={"CHINWAG_PERSONAS": str(TEST_PERSONAS)})
    replies: dict[int, list[str]] = {i: [] for i in range(len(WORDS))}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(WORDS))

    def user(i: int) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=300) as client:
                barrier.wait()
                for prompt in (f"My code word is {WORDS[i]}.", "What is my code word?"):
                    r = client.post("/gpt/recall", data={"prompt": prompt, "user": f"u{i}"})
                    r.raise_for_status()
                    replies[i].append(r.text)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(WORDS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    for i, answers in replies.items():
        assert len(answers) == 2
        others = [w for j, w in enumerate(WORDS) if j != i]
        for answer in answers:
            assert not any(w.lower() in answer.lower() for w in others), (i, answer)
        listing = httpx.get(f"{server.url}/users/u{i}/conversations", timeout=30).json()
        [conversation] = listing["data"]
        stored = httpx.get(f"{server.url}/conversations/{conversation['id']}", timeout=30).json()
        texts = [m["content"] for m in stored["messages"]]
        assert texts[0] == f"My code word is {WORDS[i]}." and texts[2] == "What is my code word?"
        assert texts[1:4:2] == answers
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    hits = sum(float(v) for v in re.findall(r'chinwag_kv_cache_hits_total\{source="\w+"\} (\S+)',
                                            metrics))
    assert hits >= len(WORDS)  # second turns start from their first turn's cells at least


def chat(server: Any, messages: list[dict[str, str]]) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/v1/chat/completions", timeout=300,
                   json={"messages": messages, "max_tokens": 16, "temperature": 0})
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def test_after_a_restart_with_kv_cache_dir_the_next_turn_starts_from_the_saved_state(
        make_server: Callable[..., Any], tmp_path: Path) -> None:
    """Turn 1 through the OpenAI API, stop the server (SIGTERM), start a new one on the same
    ``--kv-cache-dir``: turn 2 reports most of its prompt as cached, and ``/metrics`` counts a
    disk hit. Without the folder, the restarted server computes everything."""
    folder = tmp_path / "kv"
    system = ("You are Bertha, an old villager of Limbo who knows every house, every family "
              "and every goat there, and answers travellers kindly in a few sentences.")
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": "Hello! Who are you, and where am I?"}]
    first = make_server("--parallel", "2", "--kv-cache-dir", str(folder))
    answer = chat(first, messages)
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    first.process.terminate()  # SIGTERM: a clean shutdown saves the slots' states
    first.process.wait(timeout=60)
    assert list(folder.rglob("*.kv")), "nothing was saved at shutdown"

    messages += [{"role": "assistant", "content": answer["choices"][0]["message"]["content"]},
                 {"role": "user", "content": "Thank you. Where can I sleep tonight?"}]
    second = make_server("--parallel", "2", "--kv-cache-dir", str(folder))
    usage = chat(second, messages)["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] >= answer["usage"]["prompt_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"]
    metrics = httpx.get(f"{second.url}/metrics", timeout=30).text
    assert re.search(r'chinwag_kv_cache_hits_total\{source="disk"\} 1\.0', metrics), metrics

    cold = make_server("--parallel", "2", "--kv-cache-ram", "0")
    assert chat(cold, messages)["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_a_kv_cache_dir_that_cannot_be_used_stops_serve_with_a_clear_message(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = subprocess.run([sys.executable, "-m", "chinwag", "serve", "--kv-cache-dir",
                          str(blocker), "--port", "0"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0
    assert "KV cache folder" in run.stderr and str(blocker) in run.stderr
    assert "Traceback" not in run.stderr


def test_a_bad_kv_cache_ram_value_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "chinwag", "serve", "--kv-cache-ram", "lots"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "kv_cache_ram" in run.stderr
    assert "Traceback" not in run.stderr
