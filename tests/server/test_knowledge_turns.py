"""Knowledge through the server's chat routes, in-process on the scripted backend, pages
fetched for real from the local page server on 127.0.0.1: /gpt, /toil, the socket's status
frames, and /v1/chat/completions with a persona; what went in is reported every time."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chinwag.backends.scripted import ScriptedBackend
from chinwag.settings import Settings
from support.pages import PageServer
from support.server import error_of

NEWS = """name: newsy
character: Bertha
system_prompt: You are {name}.
sources:
  - name: news
    kind: feed
    url: {url}
    describe: "The village news:"
    triggers: [news]
"""


@pytest.fixture
def knowledge_settings(tmp_path: Path, pages: PageServer) -> Settings:
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "newsy.yaml").write_text(NEWS.replace("{url}", pages.url("/feed")))
    return Settings(fetch_allow_private=["127.0.0.1/32"], personas_dir=personas,
                    sources_dir=tmp_path / "sources", db=tmp_path / "chinwag.db")


def test_gpt_answers_from_a_page_and_names_it_in_a_header(
        make_app: Callable[..., TestClient],
        knowledge_settings: Settings, pages: PageServer) -> None:
    backend = ScriptedBackend(["Nineteen."])
    client = make_app(knowledge_settings, backend)
    reply = client.get("/gpt/villager", params={"prompt": pages.url("/article") + " Age?"})
    assert reply.status_code == 200 and reply.text == "Nineteen."
    sources = json.loads(reply.headers["X-Chinwag-Sources"])
    assert sources[0]["url"] == pages.url("/article") and sources[0]["title"] == \
        "Goats of Limbo" and sources[0]["tokens"] > 0 and "error" not in sources[0]
    assert "The oldest goat is called Moss" in backend.requests[-1].prompt


def test_a_plain_prompt_gets_no_sources_header(make_app: Callable[..., TestClient],
                                               knowledge_settings: Settings) -> None:
    reply = make_app(knowledge_settings, ScriptedBackend(["Hi."])).get("/gpt/villager",
                                                             params={"prompt": "Hello"})
    assert "X-Chinwag-Sources" not in reply.headers


def test_toil_takes_text_beside_the_prompt_and_lists_sources(
        make_app: Callable[..., TestClient],
        knowledge_settings: Settings, pages: PageServer) -> None:
    backend = ScriptedBackend(['{"age": 19}', '{"colour": "blue"}'])
    client = make_app(knowledge_settings, backend)
    body = client.post("/toil/villager", json={"prompt": "How old is Moss?",
                                               "text": pages.url("/article")}).json()
    assert body["age"] == 19 and body["sources"][0]["url"] == pages.url("/article")
    body = client.post("/toil/villager", json={"prompt": "What colour is the door?",
                                               "text": "The door is blue."}).json()
    assert body["sources"][0]["kind"] == "text"
    assert "The door is blue." in backend.requests[-1].prompt


@pytest.mark.parametrize(("prompt", "status", "code"), [
    ("|CONTEXT|never closed", 400, "invalid_value"),
    ("|RAG|weather|/RAG| Rain?", 404, "source_not_found"),
])
def test_bad_prefixes_are_clear_errors(make_app: Callable[..., TestClient],
                                       knowledge_settings: Settings, prompt: str, status: int,
                                       code: str) -> None:
    reply = make_app(knowledge_settings).post("/toil/villager", json={"prompt": prompt})
    assert reply.status_code == status and error_of(reply)["code"] == code


def test_a_failed_source_is_reported_or_fails_the_request_when_asked(
        make_app: Callable[..., TestClient],
        knowledge_settings: Settings, pages: PageServer) -> None:
    client = make_app(knowledge_settings, ScriptedBackend(['{"ok": true}']))
    body = client.post("/toil/villager", json={"prompt": "What?",
                                               "text": pages.url("/png")}).json()
    assert body["sources"] == [{"name": pages.url("/png"), "kind": "page",
                                "url": pages.url("/png"), "title": None, "fetched_at": None,
                                "tokens": 0, "error": "unsupported_content_type"}]
    reply = client.post("/toil/villager", json={"prompt": "What?", "text": pages.url("/png"),
                                                "on_source_error": "fail"})
    assert reply.status_code == 422 and error_of(reply)["code"] == "unsupported_content_type"


def test_the_socket_sends_status_frames_only_when_asked(
        make_app: Callable[..., TestClient],
        knowledge_settings: Settings, pages: PageServer) -> None:
    client = make_app(knowledge_settings, ScriptedBackend(["Nineteen.", "Nineteen."]))
    url = pages.url("/article")
    with client.websocket_connect("/gpt-socket/villager?status=1") as ws:
        ws.send_text(url + " Age?")
        frames = []
        while (frame := ws.receive_text()) != "<END>":
            frames.append(frame)
    assert json.loads(frames[0]) == {"type": "status", "text": f"Reading {url}"}
    sources = json.loads(frames[1])
    assert sources["type"] == "sources" and sources["sources"][0]["url"] == url
    assert "".join(frames[2:]) == "Nineteen."
    with client.websocket_connect("/gpt-socket/villager") as ws:
        ws.send_text(url + " Age?")
        plain = []
        while (frame := ws.receive_text()) != "<END>":
            plain.append(frame)
    assert "".join(plain) == "Nineteen."


def test_openai_chat_with_a_persona_reads_prefixes_and_reports_sources(
        make_app: Callable[..., TestClient],
        knowledge_settings: Settings, pages: PageServer) -> None:
    backend = ScriptedBackend(["Nineteen.", "Moss.", "Hi."])
    client = make_app(knowledge_settings, backend)
    first = [{"role": "user", "content": pages.url("/article") + " How old is Moss?"}]
    body = client.post("/v1/chat/completions", json={"model": "villager",
                                                     "messages": first}).json()
    assert body["sources"][0]["url"] == pages.url("/article")
    with_page = body["usage"]["prompt_tokens"]
    follow = [*first, {"role": "assistant", "content": "Nineteen."},
              {"role": "user", "content": "And her name?"}]
    body = client.post("/v1/chat/completions", json={"model": "villager",
                                                     "messages": follow}).json()
    prompt = backend.requests[-1].prompt
    assert "The oldest goat is called Moss" in prompt and pages.url("/article") not in prompt
    assert body["sources"][0]["url"] == pages.url("/article")
    assert len(pages.requests_to("/article")) == 1  # the follow-up found it in the cache
    plain = client.post("/v1/chat/completions", json={
        "model": "villager", "messages": [{"role": "user", "content": "How old is Moss?"}]})
    assert "sources" not in plain.json()
    assert plain.json()["usage"]["prompt_tokens"] < with_page  # the page is counted


def test_openai_stream_carries_sources_in_its_first_chunk(
        make_app: Callable[..., TestClient],
        knowledge_settings: Settings, pages: PageServer) -> None:
    client = make_app(knowledge_settings, ScriptedBackend(["It escaped."]))
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "newsy", "stream": True,
            "messages": [{"role": "user", "content": "Any news?"}]}) as reply:
        chunks = [json.loads(line[6:]) for line in reply.iter_lines()
                  if line.startswith("data: {")]
    assert chunks[0]["sources"][0]["name"] == "news"
    assert all("sources" not in c for c in chunks[1:])


def test_the_model_itself_reads_no_prefixes(make_app: Callable[..., TestClient],
                                            knowledge_settings: Settings) -> None:
    backend = ScriptedBackend(["ok"])
    client = make_app(knowledge_settings, backend)
    model = client.get("/v1/models").json()["data"][0]["id"]
    body = client.post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "|CONTEXT|x"}]}).json()
    assert "sources" not in body and "|CONTEXT|x" in backend.requests[-1].prompt
