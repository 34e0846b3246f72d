"""Fact collections and ``/v1/embeddings`` over HTTP: in-process on the scripted backend with a
real SQLite file and the real embedding model, a URL document from a local page server, and
the ``openai`` client's ``embeddings.create`` (in-process and against a real ``chinwag
serve``)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient

from chinwag.knowledge import embeddings
from chinwag.settings import Settings
from support.pages import PageServer
from support.server import error_of

MOON = "The moon orbits the earth once every twenty-seven days and shows phases."
BREAD = "Bread is baked from flour, water, yeast and salt in a hot oven."
SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.",
             "The girl is carrying a baby."]


@pytest.fixture
def client(make_app: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    """An app with its own database, allowed to fetch from 127.0.0.1."""
    return make_app(Settings(db=tmp_path / "chinwag.db", fetch_allow_private=["127.0.0.1/32"]))


def add(client: TestClient, collection: str, **body: Any) -> dict[str, Any]:
    reply = client.post(f"/collections/{collection}/documents", json=body)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


# -- collections -------------------------------------------------------------------------------


def test_documents_are_added_listed_searched_and_deleted(client: TestClient) -> None:
    moon = add(client, "facts", title="Moon", text=MOON)
    add(client, "facts", title="Bread", text=BREAD)
    assert moon == {"id": moon["id"], "object": "document", "collection": "facts",
                    "title": "Moon", "url": None, "chunks": 1, "embedded": False,
                    "created_at": moon["created_at"]}
    assert client.get("/collections").json() == {"object": "list", "data": [
        {"id": "facts", "object": "collection", "documents": 2, "chunks": 2, "embedded": False}]}
    listed = client.get("/collections/facts/documents").json()["data"]
    assert [d["title"] for d in listed] == ["Moon", "Bread"]

    found = client.get("/collections/facts/search", params={"q": "when is bread baked?"}).json()
    assert found["object"] == "list"
    assert [(h["document_id"], h["title"], h["text"]) for h in found["data"]] == \
        [(listed[1]["id"], "Bread", BREAD)]
    assert found["data"][0]["score"] > 0

    deleted = client.delete(f"/collections/facts/documents/{moon['id']}")
    assert deleted.json() == {"id": moon["id"], "object": "document", "deleted": True}
    assert client.get("/collections/facts/search", params={"q": "moon"}).json()["data"] == []


def test_search_of_an_unknown_collection_is_an_empty_list(client: TestClient) -> None:
    reply = client.get("/collections/nothing/search", params={"q": "moon"})
    assert reply.status_code == 200 and reply.json() == {"object": "list", "data": []}


def test_deleting_an_unknown_document_is_a_404(client: TestClient) -> None:
    moon = add(client, "facts", title="Moon", text=MOON)
    reply = client.delete(f"/collections/facts/documents/{moon['id'] + 1}")
    assert reply.status_code == 404
    assert error_of(reply)["code"] == "document_not_found"
    elsewhere = client.delete(f"/collections/other/documents/{moon['id']}")
    assert elsewhere.status_code == 404


@pytest.mark.parametrize("body", [
    {"title": "both", "text": "words", "url": "http://127.0.0.1/page"},
    {"title": "neither"},
    {"text": "no title"},
    {"title": "blank", "text": " \n "},
])
def test_a_document_body_that_is_not_one_kind_is_a_400(client: TestClient,
                                                       body: dict[str, Any]) -> None:
    reply = client.post("/collections/facts/documents", json=body)
    assert reply.status_code == 400
    assert error_of(reply)["param"] in {"text", "title"}


def test_an_invalid_collection_name_is_a_400(client: TestClient) -> None:
    reply = client.post("/collections/bad name!/documents", json={"title": "t", "text": "x"})
    assert reply.status_code == 400 and error_of(reply)["param"] == "collection"
    search = client.get("/collections/bad name!/search", params={"q": "x"})
    assert search.status_code == 400 and error_of(search)["param"] == "collection"


@pytest.mark.parametrize(("params", "param"), [
    ({}, "q"), ({"q": ""}, "q"), ({"q": "moon", "k": 0}, "k"), ({"q": "moon", "k": 51}, "k"),
    ({"q": "moon", "k": "four"}, "k"),
])
def test_search_without_q_or_with_k_out_of_range_is_a_400(
        client: TestClient, params: dict[str, Any], param: str) -> None:
    reply = client.get("/collections/facts/search", params=params)
    assert reply.status_code == 400
    assert error_of(reply)["param"] == param


def test_a_url_document_is_fetched_and_its_text_stored(client: TestClient,
                                                       pages: PageServer) -> None:
    added = add(client, "web", url=pages.url("/page"))
    assert added["url"] == pages.url("/page") and added["title"] == pages.url("/page")
    assert added["chunks"] == 1
    hits = client.get("/collections/web/search", params={"q": "hello"}).json()["data"]
    assert [(h["url"], h["text"]) for h in hits] == [(pages.url("/page"), "hello")]
    titled = add(client, "web", url=pages.url("/page"), title="Greeting")
    assert titled["title"] == "Greeting"


def test_a_url_that_cannot_be_fetched_is_a_422_with_its_code(client: TestClient,
                                                             pages: PageServer) -> None:
    missing = client.post("/collections/web/documents", json={"url": pages.url("/missing")})
    assert missing.status_code == 422 and error_of(missing)["code"] == "http_status"
    blocked = client.post("/collections/web/documents", json={"url": "http://10.0.0.1/"})
    assert blocked.status_code == 422 and error_of(blocked)["code"] == "blocked_address"
    assert client.get("/collections").json()["data"] == []


# -- embeddings --------------------------------------------------------------------------------


@pytest.mark.slow
def test_embeddings_float_and_base64_with_usage(client: TestClient) -> None:
    reply = client.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": SENTENCES})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list" and body["model"] == "all-minilm-l6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert {d["object"] for d in body["data"]} == {"embedding"}
    vectors = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 3 * 2

    one = client.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": SENTENCES[0],
                                              "encoding_format": "base64", "dimensions": 384})
    decoded = np.frombuffer(base64.b64decode(one.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, vectors[0], atol=1e-6)


@pytest.mark.slow
def test_the_openai_client_embeds_in_process(client: TestClient) -> None:
    """The ``openai`` client asks for base64 by default and decodes it with numpy."""
    api = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client,
                        max_retries=0)
    result = api.embeddings.create(model="all-minilm-l6-v2", input=SENTENCES)
    eating, bread, baby = (np.array(d.embedding) for d in result.data)
    assert len(eating) == 384 and eating @ bread > eating @ baby
    assert result.usage.prompt_tokens > 0


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "all-minilm-l6-v2", "input": []}, "input"),
    ({"model": "all-minilm-l6-v2", "input": ""}, "input"),
    ({"model": "all-minilm-l6-v2", "input": ["fine", ""]}, "input"),
    ({"model": "all-minilm-l6-v2", "input": [101, 7592, 102]}, "input"),
    ({"model": "all-minilm-l6-v2", "input": [[101, 7592, 102]]}, "input"),
    ({"model": "all-minilm-l6-v2", "input": ["x"] * 2049}, "input"),
    ({"model": "all-minilm-l6-v2", "input": "x", "dimensions": 256}, "dimensions"),
    ({"model": "all-minilm-l6-v2", "input": "x", "encoding_format": "int8"},
     "encoding_format"),
    ({"model": "text-embedding-3-small", "input": "x"}, "model"),
    ({"input": "x"}, "model"),
])
def test_bad_embeddings_requests_are_400s(client: TestClient, body: dict[str, Any],
                                          param: str) -> None:
    reply = client.post("/v1/embeddings", json=body)
    assert reply.status_code == 400, reply.text
    error = error_of(reply)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_token_arrays_are_refused_with_a_clear_message(client: TestClient) -> None:
    reply = client.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": [1, 2]})
    assert "token arrays are not supported" in error_of(reply)["message"]


def test_the_embedding_model_is_listed_when_installed(client: TestClient) -> None:
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "all-minilm-l6-v2" in ids


def test_without_the_extra_embeddings_are_a_501_and_not_listed(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "model_folder", lambda: None)
    reply = client.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "x"})
    assert reply.status_code == 501
    error = error_of(reply)
    assert error["code"] == "embeddings_unavailable"
    assert "pip install 'chinwag[embeddings]'" in error["message"]
    assert "all-minilm-l6-v2" not in [m["id"] for m in client.get("/v1/models").json()["data"]]
    embedded = client.post("/collections/c/documents",
                           json={"title": "t", "text": MOON, "embed": True})
    assert embedded.status_code == 501
    add(client, "c", title="t", text=MOON)  # without vectors: search by words still works
    assert client.get("/collections/c/search", params={"q": "moon"}).json()["data"]


@pytest.mark.slow
def test_embedded_documents_make_search_hybrid(client: TestClient) -> None:
    """A question sharing no word with the answer finds it through the vectors; without
    vectors, BM25 alone finds nothing."""
    for collection, embed in (("kitchen", True), ("plain", False)):
        add(client, collection, title="Bread", text=BREAD, embed=embed)
        add(client, collection, title="Moon", text=MOON, embed=embed)
    assert [c["embedded"] for c in client.get("/collections").json()["data"]] == [True, False]
    question = {"q": "sourdough loaves", "k": 1}
    assert client.get("/collections/plain/search", params=question).json()["data"] == []
    hits = client.get("/collections/kitchen/search", params=question).json()["data"]
    assert [h["title"] for h in hits] == ["Bread"]


# -- a real server -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_openai_client_embeds_against_a_real_server(server: Any) -> None:
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                        timeout=120)
    result = api.embeddings.create(model="all-minilm-l6-v2", input=SENTENCES)
    eating, bread, baby = (np.array(d.embedding) for d in result.data)
    assert eating.shape == (384,)
    assert float(eating @ bread) > float(eating @ baby)
    assert [d.index for d in result.data] == [0, 1, 2] and result.model == "all-minilm-l6-v2"
