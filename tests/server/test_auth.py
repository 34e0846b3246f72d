"""API keys, in-process on the scripted backend: with keys configured every route but
``/health`` and the web page wants one of them (``Authorization: Bearer KEY`` or
``X-Api-Key``), and answers 401 ``invalid_api_key`` without it."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from chinwag.settings import Settings
from support.server import error_of


@pytest.fixture
def client(make_app: Callable[..., TestClient]) -> TestClient:
    """An app that takes two keys, ``sesame`` and ``other``."""
    return make_app(Settings(api_key="sesame,other"))


def test_health_and_the_web_page_stay_open(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/").status_code == 200


def test_a_missing_key_is_a_401_invalid_api_key(client: TestClient) -> None:
    missing = client.get("/v1/models")
    assert missing.status_code == 401 and error_of(missing)["code"] == "invalid_api_key"


def test_a_wrong_key_is_a_401(client: TestClient) -> None:
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and error_of(wrong)["code"] == "invalid_api_key"


def test_any_configured_key_is_taken_in_either_header(client: TestClient) -> None:
    assert client.get("/v1/models", headers={"X-Api-Key": "other"}).status_code == 200
    assert client.get("/v1/models",
                      headers={"Authorization": "Bearer sesame"}).status_code == 200


def test_the_persona_endpoints_want_a_key_too(client: TestClient) -> None:
    assert client.get("/gpt/villager", params={"prompt": "hi"}).status_code == 401


def test_a_websocket_without_a_key_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, \
            client.websocket_connect("/gpt-socket/villager"):
        pass
    assert refused.value.code == 4401
    with client.websocket_connect("/gpt-socket/villager?api_key=other") as ws:
        ws.send_text("Hello")
        while ws.receive_text() != "<END>":
            pass


def test_the_openai_client_raises_on_a_wrong_key_and_works_with_a_good_one(
        client: TestClient) -> None:
    def openai_client(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=client,
                             max_retries=0)

    with pytest.raises(openai.AuthenticationError):
        openai_client("nope").models.list()
    assert any(m.id == "villager" for m in openai_client("sesame").models.list().data)
