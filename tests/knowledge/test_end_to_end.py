"""Knowledge end to end on the embedded model: a real ``chinwag serve`` reads a page and a
feed from the local page server (127.0.0.1, allowed with ``--fetch-allow-private``), through
the real ``openai`` client and a real websocket; the follow-up question reuses the KV cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from websockets.sync.client import connect

from support.pages import PageServer

pytestmark = pytest.mark.slow

NEWSY = """name: newsy
character: Bertha
system_prompt: You are {name}, who reads the village news.
sampling: {temperature: 0, max_tokens: 12}
sources:
  - name: news
    kind: feed
    url: URL
    describe: "The village news:"
    triggers: [news]
"""


def test_a_page_and_a_feed_end_to_end(make_server: Callable[..., Any], pages: PageServer,
                                      tmp_path: Path) -> None:
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "newsy.yaml").write_text(NEWSY.replace("URL", pages.url("/feed")))
    server = make_server("--fetch-allow-private", "127.0.0.1/32",
                         env={"CHINWAG_PERSONAS": str(personas)})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none")

    question = {"role": "user", "content": pages.url("/article") + " How old is Moss?"}
    first = client.chat.completions.create(model="villager", messages=[question],  # type: ignore[list-item]
                                           max_tokens=12, temperature=0)
    assert first.choices[0].message.content
    sources = (first.model_extra or {})["sources"]
    assert sources[0]["url"] == pages.url("/article") and sources[0]["tokens"] > 20
    assert first.usage is not None and first.usage.prompt_tokens > sources[0]["tokens"]

    history: list[Any] = [question,
                          {"role": "assistant", "content": first.choices[0].message.content},
                          {"role": "user", "content": "Who looks after her?"}]
    follow = client.chat.completions.create(model="villager", max_tokens=12, temperature=0,
                                            messages=history)
    assert follow.usage is not None and follow.usage.prompt_tokens_details is not None
    assert (follow.usage.prompt_tokens_details.cached_tokens or 0) >= sources[0]["tokens"]
    assert len(pages.requests_to("/article")) == 1

    socket_url = server.url.replace("http://", "ws://") + "/gpt-socket/newsy?status=1&user=ann"
    with connect(socket_url) as ws:
        ws.send("Any news today?")
        frames = []
        while (frame := str(ws.recv(timeout=120))) != "<END>":
            frames.append(frame)
    assert json.loads(frames[0]) == {"type": "status", "text": f"Reading {pages.url('/feed')}"}
    listed = json.loads(frames[1])
    assert listed["type"] == "sources" and listed["sources"][0]["kind"] == "feed"
    assert "".join(frames[2:]).strip()
