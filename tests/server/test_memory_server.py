"""Server-side memory on a real ``chinwag serve`` (real model, real SQLite file): resuming a
user's conversation over HTTP, and surviving SIGKILL in the middle of a streamed answer."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from chinwag.store import Store

pytestmark = pytest.mark.slow

# The example counts to 100 and the model copies its length whatever it is asked: the answer
# the server is killed in is still being written on a busy machine (one counting to 12 can end
# first).
LONG_COUNTER = f"""\
name: counter
character: Counter
description: a machine that counts out loud
system_prompt: "{{name}} is {{description}}. It always counts as far as it is asked."
examples:
  - user: Count from 1 to 100.
    assistant: {", ".join(str(i) for i in range(1, 101))}.
sampling: {{temperature: 0, repeat_penalty: 1.0, max_tokens: 250}}
"""


def test_a_users_conversation_is_resumed_across_requests(server: object) -> None:
    url = server.url
    first = httpx.get(f"{url}/gpt/recall", params={"prompt": "My name is Zorblax.",
                                                   "user": "zed"}, timeout=120)
    second = httpx.post(f"{url}/gpt/recall", data={"prompt": "What is my name?",
                                                   "user": "zed"}, timeout=120)
    stranger = httpx.get(f"{url}/gpt/recall", params={"prompt": "What is my name?",
                                                      "user": "someone-else"}, timeout=120)
    assert first.headers["x-conversation-id"] == second.headers["x-conversation-id"]
    assert "Zorblax" in second.text and "Zorblax" not in stranger.text
    listed = httpx.get(f"{url}/users/zed/conversations", timeout=10).json()["data"]
    assert [(c["persona"], c["message_count"]) for c in listed] == [("recall", 4)]


def test_sigkill_mid_stream_keeps_completed_turns_and_the_conversation_goes_on(
        make_server: Callable[..., object], tmp_path: Path) -> None:
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "counter.yaml").write_text(LONG_COUNTER)
    db = tmp_path / "chat.db"
    env = {"CHINWAG_PERSONAS": str(personas)}
    server = make_server("--db", str(db), env=env)
    ws_url = server.url.replace("http://", "ws://") + "/gpt-socket/counter?user=kim"
    with connect(ws_url, open_timeout=10) as ws:
        cid = dict(ws.response.headers)["x-conversation-id"]
        ws.send("Count from 1 to 5.")
        while ws.recv(timeout=120) != "<END>":
            pass
        ws.send("Count from 1 to 500.")
        for _ in range(5):
            ws.recv(timeout=120)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)

    with Store(db) as store:
        assert store.integrity_check() == "ok"
        messages = store.messages(cid)
    assert [(m.role, m.content, m.complete) for m in messages[:2]] == [
        ("user", "Count from 1 to 5.", True), ("assistant", messages[1].content, True)]
    assert "5" in messages[1].content
    interrupted = messages[2:]
    assert [m.content for m in interrupted if m.role == "user"] in ([], ["Count from 1 to 500."])
    assert not any(m.complete for m in interrupted)

    again = make_server("--db", str(db), env=env)
    with connect(again.url.replace("http://", "ws://")
                 + f"/gpt-socket/counter?user=kim&conversation={cid}", open_timeout=10) as ws:
        ws.send("Count from 1 to 3.")
        answer = ""
        while (frame := ws.recv(timeout=120)) != "<END>":
            answer += frame
    assert "1, 2, 3" in answer
    with Store(db) as store:
        after = store.messages(cid)
    assert after[-1].role == "assistant" and after[-1].complete
    assert after[-2].content == "Count from 1 to 3." and after[-2].complete
    assert [m.content for m in after[:2]] == [m.content for m in messages[:2]]
