"""Every route's bad input and refusals, in-process on the scripted backend: malformed bodies,
wrong types, missing fields, out-of-range values, unknown models, personas and routes, bodies
too large, a full queue. Each answers the right status in OpenAI's error shape (never a 500),
and the app goes on serving."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import openai
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from chinwag.backends.scripted import ScriptedBackend
from chinwag.settings import Settings
from chinwag.types import EventStream, SamplingParams
from support.server import error_of

MODEL = "scripted"  # the scripted backend's model id


@pytest.fixture
def client(make_app: Callable[..., TestClient]) -> TestClient:
    return make_app()


@pytest.fixture
def openai_client(client: TestClient) -> openai.OpenAI:
    """The ``openai`` client, talking to the in-process app."""
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client,
                         max_retries=0)


# -- bodies that are not what the route takes ---------------------------------------------------

@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"a string"', b""])
def test_malformed_or_non_object_body_is_a_400(client: TestClient, content: bytes) -> None:
    reply = client.post("/v1/chat/completions", content=content,
                        headers={"content-type": "application/json"})
    assert reply.status_code == 400
    assert error_of(reply)["type"] == "invalid_request_error"


def test_missing_messages_is_a_400_naming_the_field(client: TestClient) -> None:
    reply = client.post("/v1/chat/completions", json={"model": MODEL})
    assert reply.status_code == 400 and error_of(reply)["param"] == "messages"


def test_wrong_type_is_a_400(client: TestClient) -> None:
    reply = client.post("/v1/completions",
                        json={"model": MODEL, "prompt": "x", "temperature": "hot"})
    assert reply.status_code == 400 and error_of(reply)["param"] == "temperature"


def test_payload_over_the_limit_is_a_413(client: TestClient) -> None:
    huge = {"model": MODEL, "prompt": "x" * 2_000_000}  # over Settings().max_body_bytes
    reply = client.post("/v1/completions", json=huge)
    assert reply.status_code == 413 and error_of(reply)["code"] == "payload_too_large"


def test_server_keeps_serving_after_errors(client: TestClient) -> None:
    assert client.post("/v1/completions", content=b"{").status_code == 400
    reply = client.post("/v1/completions", json={"model": MODEL, "prompt": "Hi",
                                                 "max_tokens": 2})
    assert reply.status_code == 200


# -- values the model cannot take ---------------------------------------------------------------

def test_unsupported_schema_is_a_400(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "x", "schema": {"type": "bogus"}}})
    assert err.value.status_code == 400


def test_n_other_than_one_is_a_400_that_says_so(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        openai_client.chat.completions.create(model=MODEL, n=2,
                                              messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("field, value", [("temperature", -1), ("top_p", 1.5),
                                          ("max_tokens", 0)])
def test_invalid_sampling_value_names_the_param(openai_client: openai.OpenAI, field: str,
                                                value: float) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.chat.completions.create(model=MODEL,
                                              messages=[{"role": "user", "content": "hi"}],
                                              **{field: value})  # type: ignore[call-overload]
    assert err.value.body["param"] == field  # type: ignore[index]


def test_context_overflow_is_context_length_exceeded(openai_client: openai.OpenAI) -> None:
    long = "word " * 3000  # 3,000 tokens for the scripted backend, whose window is 2,048
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.chat.completions.create(model=MODEL,
                                              messages=[{"role": "user", "content": long}])
    assert err.value.code == "context_length_exceeded"
    assert "2048" in str(err.value)


# -- what does not exist: 404s ------------------------------------------------------------------

def test_unknown_route_is_an_openai_shaped_404(client: TestClient) -> None:
    reply = client.get("/v1/nothing-here")
    assert reply.status_code == 404 and error_of(reply)["type"] == "invalid_request_error"


def test_unknown_model_raises_not_found(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        openai_client.chat.completions.create(model="wizard",
                                              messages=[{"role": "user", "content": "hi"}])
    assert "wizard" in str(err.value) and "villager" in str(err.value)


def test_gpt_unknown_persona_is_a_404(client: TestClient) -> None:
    reply = client.get("/gpt/wizard", params={"prompt": "hi"})
    assert reply.status_code == 404
    assert "villager" in error_of(reply)["message"]


def test_websocket_unknown_persona_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, \
            client.websocket_connect("/gpt-socket/wizard"):
        pass
    assert refused.value.code == 4404


# -- the persona endpoints' own input -----------------------------------------------------------

def test_gpt_without_prompt_is_a_400(client: TestClient) -> None:
    reply = client.get("/gpt/villager")
    assert reply.status_code == 400 and error_of(reply)["param"] == "prompt"


def test_toil_malformed_json_body_is_a_400(client: TestClient) -> None:
    reply = client.post("/toil/villager", content=b"{not json",
                        headers={"content-type": "application/json"})
    assert reply.status_code == 400
    assert error_of(reply)["type"] == "invalid_request_error"


# -- a full queue: 503 with Retry-After ---------------------------------------------------------

class HeldBackend(ScriptedBackend):
    """A scripted backend whose generations stop after their first token until ``release``
    is set (a model busy with a long answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        return self._held(super().generate(prompt, params))

    def _held(self, events: EventStream) -> EventStream:
        first = True
        for event in events:
            yield event
            if first:
                first = False
                assert self.release.wait(60), "the test never released the model"


@pytest.fixture
def held() -> Iterator[HeldBackend]:
    backend = HeldBackend()
    yield backend
    backend.release.set()  # a failed test must not leave a worker waiting


def test_queue_over_its_bound_is_a_503_with_retry_after(
        make_app: Callable[..., TestClient], held: HeldBackend) -> None:
    client = make_app(Settings(max_queue=0), held)  # one place (the scripted backend's), no line
    held.enqueue("Once upon a time there was a goat")
    long = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 200, "stream": True}
    with client.stream("POST", "/v1/completions", json=long) as running:
        lines = running.iter_lines()
        next(line for line in lines if line.startswith("data: "))  # it holds the model now
        busy = client.post("/v1/completions", json={"model": MODEL, "prompt": "Hi"})
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1" and error_of(busy)["code"] == "overloaded"
        held.release.set()
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"  # never interrupted by the refused one
    after = client.post("/v1/completions", json={"model": MODEL, "prompt": "Hi",
                                                 "max_tokens": 2})
    assert after.status_code == 200


# -- a source that cannot be fetched ------------------------------------------------------------

@pytest.mark.parametrize("code", ["blocked_address", "too_large", "timeout", "http_status",
                                  "unsupported_content_type", "parse_error", "bad_url"])
def test_fetch_error_is_a_422_carrying_its_code(code: str) -> None:
    from fastapi import FastAPI

    from chinwag.errors import FetchError
    from chinwag.server.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/source")
    def source() -> None:
        raise FetchError("refused http://pages.test/", code=code, url="http://pages.test/")

    reply = TestClient(app).get("/source")
    assert reply.status_code == 422
    assert error_of(reply)["code"] == code
    assert error_of(reply)["param"] == "url"
    assert "pages.test" in error_of(reply)["message"]


class InvalidOutputBackend(ScriptedBackend):
    """Generates JSON that fails its schema every time (what ``OutputInvalid`` reports)."""

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        from chinwag.errors import OutputInvalid

        raise OutputInvalid("the generated JSON does not match the schema after 3 attempt(s) "
                            "(7 is not a multiple of 5): '7'", text="7",
                            problem="7 is not a multiple of 5")
        yield  # a generator, as backends are


def test_output_that_fails_its_schema_is_a_500_carrying_the_text(
        make_app: Callable[..., TestClient]) -> None:
    client = make_app(backend=InvalidOutputBackend())
    reply = client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "a number"}],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "n", "schema": {"type": "integer", "multipleOf": 5}}}})
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert error["code"] == "invalid_output" and error["param"] == "response_format"
    assert "not a multiple of 5" in error["message"] and "'7'" in error["message"]
