"""OpenAI's Files and Batches APIs in-process on a scripted backend: upload and limits, a
batch run to ``completed`` with its output and error files, cancelling, a batch resumed by a
new app on the same database, the window ending, live requests ahead of a batch's lines, and
the errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chinwag.backends.scripted import ScriptedBackend
from chinwag.cancellation import on_cancel
from chinwag.errors import Cancelled
from chinwag.server import create_app
from chinwag.settings import Settings
from chinwag.types import EventStream, SamplingParams
from support.waiting import wait_until


class Gated(ScriptedBackend):
    """A scripted backend whose generations wait for a permit each (``let(n)``), or until
    their request is cancelled."""

    def __init__(self, parallel: int = 2) -> None:
        super().__init__(default_reply="a short answer")
        self.parallel = parallel
        self.permits = threading.Semaphore(0)
        self.waiting = 0
        self.asked: list[str] = []
        self._lock = threading.Lock()

    @property
    def max_parallel(self) -> int:
        return self.parallel

    def let(self, n: int = 1) -> None:
        for _ in range(n):
            self.permits.release()

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        stopped = threading.Event()
        on_cancel(stopped.set)  # as the real backends do: a cancelled request stops waiting
        with self._lock:
            self.asked.append(prompt)
            self.waiting += 1
        try:
            while not self.permits.acquire(timeout=0.01):
                if stopped.is_set():
                    raise Cancelled("stopped while waiting for a permit")
        finally:
            with self._lock:
                self.waiting -= 1
        yield from super().generate(prompt, params)


def jsonl(*rows: dict[str, Any] | str) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def completion(i: int, url: str = "/v1/completions") -> dict[str, Any]:
    return {"custom_id": f"t{i}", "method": "POST", "url": url,
            "body": {"prompt": f"Line {i}", "max_tokens": 4}}


def upload(client: TestClient, data: bytes, name: str = "in.jsonl",
           purpose: str = "batch") -> Any:
    return client.post("/v1/files", files={"file": (name, data)}, data={"purpose": purpose})


def start(client: TestClient, data: bytes, endpoint: str = "/v1/completions") -> dict[str, Any]:
    file = upload(client, data)
    assert file.status_code == 200, file.text
    made = client.post("/v1/batches", json={"input_file_id": file.json()["id"],
                                            "endpoint": endpoint, "completion_window": "24h",
                                            "metadata": {"job": "test"}})
    assert made.status_code == 200, made.text
    return dict(made.json())


def batch(client: TestClient, batch_id: str) -> dict[str, Any]:
    got = client.get(f"/v1/batches/{batch_id}")
    assert got.status_code == 200, got.text
    return dict(got.json())


def ended(client: TestClient, batch_id: str) -> dict[str, Any]:
    wait_until(lambda: batch(client, batch_id)["status"] in (
        "completed", "failed", "expired", "cancelled"), what="the batch ended")
    return batch(client, batch_id)


def lines_of(client: TestClient, file_id: str) -> list[dict[str, Any]]:
    got = client.get(f"/v1/files/{file_id}/content")
    assert got.status_code == 200
    return [json.loads(line) for line in got.text.splitlines()]


@pytest.fixture
def app_on(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Apps on one database (``tmp_path/b.db``); each started when made, stopped by
    ``TestClient.__exit__`` or at the end (after every ``Gated`` backend's waiting
    generations are let go, so a failed test ends instead of hanging)."""
    opened: list[TestClient] = []
    gated: list[Gated] = []

    def make(backend: ScriptedBackend | None = None, **settings: Any) -> TestClient:
        app = create_app(Settings(db=tmp_path / "b.db", **settings),
                         backend or ScriptedBackend(default_reply="a short answer"))
        if isinstance(backend, Gated):
            gated.append(backend)
        client = TestClient(app)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for backend in gated:  # a test that failed midway leaves generations waiting: let them end
        backend.let(1000)
    for client in opened:
        client.__exit__(None, None, None)


def test_a_batch_runs_to_completed_with_its_output_and_error_files(
        app_on: Callable[..., TestClient]) -> None:
    client = app_on()
    made = start(client, jsonl(completion(0), completion(1), "not json",
                               completion(2, url="/v1/chat/completions"), completion(0)))
    assert made["object"] == "batch" and made["status"] in ("validating", "in_progress")
    assert made["metadata"] == {"job": "test"} and made["expires_at"] > made["created_at"]
    done = ended(client, made["id"])
    assert done["status"] == "completed" and done["completed_at"] is not None
    assert done["request_counts"] == {"total": 5, "completed": 2, "failed": 3}
    output = lines_of(client, done["output_file_id"])
    assert sorted(o["custom_id"] for o in output) == ["t0", "t1"]
    assert all(o["response"]["status_code"] == 200 and o["error"] is None for o in output)
    assert output[0]["response"]["body"]["choices"][0]["text"] == "a short answer"
    errors = lines_of(client, done["error_file_id"])
    assert [(e["line"], e["error"]["code"]) for e in errors] == [
        (3, "invalid_json"), (4, "endpoint_mismatch"), (5, "duplicate_custom_id")]
    files = client.get("/v1/files").json()
    assert {f["purpose"] for f in files["data"]} == {"batch", "batch_output"}
    assert client.get(f"/v1/files/{done['output_file_id']}").json()["bytes"] > 0
    listed = client.get("/v1/batches").json()
    assert [b["id"] for b in listed["data"]] == [made["id"]] and not listed["has_more"]


def test_an_endpoint_error_is_an_error_line_with_the_answer(
        app_on: Callable[..., TestClient]) -> None:
    client = app_on()
    made = start(client, jsonl(
        {"custom_id": "ok", "persona": "assistant", "prompt": "hello"},
        {"custom_id": "who", "persona": "nobody", "prompt": "hello"}),
        endpoint="/v1/chat/completions")
    done = ended(client, made["id"])
    assert done["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    [error] = lines_of(client, done["error_file_id"])
    assert error["custom_id"] == "who" and error["error"]["code"] == "model_not_found"
    assert error["response"]["status_code"] == 404


def test_cancelling_keeps_the_lines_done_and_stops_the_rest(
        app_on: Callable[..., TestClient]) -> None:
    backend = Gated()
    client = app_on(backend, parallel=2)
    made = start(client, jsonl(*(completion(i) for i in range(6))))
    wait_until(lambda: backend.waiting == 1)  # one place for the batch: half of parallel
    backend.let(2)
    wait_until(lambda: batch(client, made["id"])["request_counts"]["completed"] == 2)
    cancelled = client.post(f"/v1/batches/{made['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancelling_at"] and cancelled.json()["cancelled_at"]
    assert len(lines_of(client, cancelled.json()["output_file_id"])) == 2
    again = client.post(f"/v1/batches/{made['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    backend.let(10)


def test_a_batch_cancelled_before_its_task_runs_ends_cancelled(
        app_on: Callable[..., TestClient]) -> None:
    """Created, started and cancelled in one turn of the event loop: the task never runs
    a line (nor reads its batch), and the batch still ends ``cancelled``."""
    client = app_on()
    state = client.app.state.chinwag  # type: ignore[attr-defined]
    file_id = upload(client, jsonl(completion(0))).json()["id"]

    async def create_and_cancel() -> str:
        made = state.batches.create(file_id, "/v1/completions", "24h")
        state.batches.launch(made.id)
        state.batches.request_cancel(made.id)
        await state.batches.stop(made.id)
        return str(made.id)

    batch_id = client.portal.call(create_and_cancel)  # type: ignore[union-attr]
    done = batch(client, batch_id)
    assert done["status"] == "cancelled" and done["request_counts"]["completed"] == 0


def test_a_batch_that_has_ended_cannot_be_cancelled(app_on: Callable[..., TestClient]) -> None:
    client = app_on()
    done = ended(client, start(client, jsonl(completion(0)))["id"])
    refused = client.post(f"/v1/batches/{done['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "batch_finished"


def test_a_new_app_on_the_same_database_resumes_an_unfinished_batch(
        app_on: Callable[..., TestClient]) -> None:
    backend = Gated()
    first = app_on(backend, parallel=2)
    made = start(first, jsonl(*(completion(i) for i in range(5))))
    wait_until(lambda: backend.waiting == 1)
    backend.let(2)
    wait_until(lambda: batch(first, made["id"])["request_counts"]["completed"] == 2)
    first.__exit__(None, None, None)  # the line held in the backend is dropped
    backend.let(10)
    second = app_on()
    done = ended(second, made["id"])
    assert done["status"] == "completed"
    ids = [o["custom_id"] for o in lines_of(second, done["output_file_id"])]
    assert sorted(ids) == [f"t{i}" for i in range(5)]  # each exactly once
    assert done["request_counts"] == {"total": 5, "completed": 5, "failed": 0}


def test_lines_not_run_when_the_window_ends_go_to_the_error_file(
        app_on: Callable[..., TestClient]) -> None:
    backend = Gated()
    client = app_on(backend, parallel=2)
    state = client.app.state.chinwag  # type: ignore[attr-defined]
    made = start(client, jsonl(*(completion(i) for i in range(4))))
    wait_until(lambda: backend.waiting == 1)  # t0 runs; the lines sent with it wait
    state.batches.clock = lambda: made["expires_at"] + 1.0
    backend.let(10)  # the lines already sent finish; no more are sent
    done = ended(client, made["id"])
    assert done["status"] == "expired" and done["expired_at"] is not None
    counts = done["request_counts"]
    assert counts["total"] == 4 and 1 <= counts["completed"] < 4
    assert counts["completed"] + counts["failed"] == 4
    codes = {e["custom_id"]: e["error"]["code"] for e in lines_of(client, done["error_file_id"])}
    assert set(codes.values()) == {"batch_expired"} and len(codes) == counts["failed"]
    assert "t3" in codes


def test_a_live_request_takes_the_place_a_batch_leaves_free(
        app_on: Callable[..., TestClient]) -> None:
    """parallel 2: the batch holds one place with three lines waiting; a live request runs at
    once in the other."""
    backend = Gated()
    client = app_on(backend, parallel=2)
    made = start(client, jsonl(*(completion(i) for i in range(4))))
    wait_until(lambda: backend.waiting == 1)
    answer: dict[str, Any] = {}
    live = threading.Thread(target=lambda: answer.update(client.post(
        "/v1/completions", json={"prompt": "live one", "max_tokens": 4}).json()))
    live.start()
    wait_until(lambda: backend.waiting == 2)  # both places taken: the batch's and the live one
    # the batch sends several lines at once: whichever took the batch's place, the live one
    # came next
    assert backend.asked[0].startswith("Line ") and backend.asked[1:] == ["live one"]
    backend.let(10)
    live.join()
    assert ended(client, made["id"])["status"] == "completed"
    assert answer["choices"][0]["text"] == "a short answer"


def test_with_one_place_a_live_request_is_served_before_the_batch_lines_waiting(
        app_on: Callable[..., TestClient]) -> None:
    backend = Gated(parallel=1)
    client = app_on(backend, parallel=1)
    made = start(client, jsonl(*(completion(i) for i in range(4))))
    wait_until(lambda: backend.waiting == 1)
    state = client.app.state.chinwag  # type: ignore[attr-defined]
    wait_until(lambda: state.queue.background_waiting == 1)  # t1 sent, waiting for the place
    answer: dict[str, Any] = {}
    live = threading.Thread(target=lambda: answer.update(client.post(
        "/v1/completions", json={"prompt": "live one", "max_tokens": 4}).json()))
    live.start()
    wait_until(lambda: state.queue.waiting == 1)
    backend.let(1)  # t0 ends: the place goes to the live request, not to t1
    wait_until(lambda: len(backend.asked) == 2)
    # the batch sends several lines at once: whichever took the batch's place, the live one
    # came next
    assert backend.asked[0].startswith("Line ") and backend.asked[1:] == ["live one"]
    backend.let(10)
    live.join()
    assert answer["choices"][0]["text"] == "a short answer"
    assert ended(client, made["id"])["request_counts"]["completed"] == 4


def test_files_are_listed_read_and_deleted(app_on: Callable[..., TestClient]) -> None:
    client = app_on()
    first = upload(client, b'{"a": 1}\n', "one.jsonl").json()
    second = upload(client, b'{"b": 2}\n', "two.jsonl").json()
    assert first["object"] == "file" and first["bytes"] == 9 and first["filename"] == "one.jsonl"
    page = client.get("/v1/files", params={"limit": 1, "order": "asc"}).json()
    assert [f["id"] for f in page["data"]] == [first["id"]] and page["has_more"]
    rest = client.get("/v1/files", params={"after": first["id"], "order": "asc"}).json()
    assert [f["id"] for f in rest["data"]] == [second["id"]] and not rest["has_more"]
    assert client.get(f"/v1/files/{first['id']}/content").content == b'{"a": 1}\n'
    gone = client.delete(f"/v1/files/{first['id']}")
    assert gone.json() == {"id": first["id"], "object": "file", "deleted": True}
    missing = client.get(f"/v1/files/{first['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "file_not_found"


def test_an_upload_over_the_limit_is_a_413_and_nothing_is_kept(
        app_on: Callable[..., TestClient], tmp_path: Path) -> None:
    client = app_on(max_file_bytes=1000)
    refused = upload(client, b"x" * 1001)
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "file_too_large"
    huge = upload(client, b"x" * (1000 + (1 << 17)))  # past the body limit: refused unread
    assert huge.status_code == 413
    assert client.get("/v1/files").json()["data"] == []
    assert list((tmp_path / "files").iterdir()) == []
    assert upload(client, b"x" * 1000).status_code == 200


def test_bad_requests_are_refused_before_anything_runs(
        app_on: Callable[..., TestClient]) -> None:
    client = app_on()
    assert upload(client, b"{}\n", purpose="fine-tune").status_code == 400
    file_id = upload(client, jsonl(completion(0))).json()["id"]

    def create(**body: Any) -> Any:
        return client.post("/v1/batches", json={"input_file_id": file_id,
                                                "endpoint": "/v1/completions",
                                                "completion_window": "24h", **body})

    assert create(endpoint="/v1/responses").json()["error"]["param"] == "endpoint"
    assert create(completion_window="1h").json()["error"]["param"] == "completion_window"
    unknown = create(input_file_id="file-nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "file_not_found"
    assert client.get("/v1/batches/batch_nope").status_code == 404
    assert client.get("/v1/batches").json()["data"] == []


def test_an_empty_input_file_fails_the_batch(app_on: Callable[..., TestClient]) -> None:
    client = app_on()
    done = ended(client, start(client, b"\n\n")["id"])
    assert done["status"] == "failed" and done["errors"]["data"][0]["code"] == "empty_file"


def test_an_input_file_that_is_not_utf8_fails_the_batch(
        app_on: Callable[..., TestClient]) -> None:
    client = app_on()
    done = ended(client, start(client, b"\xff\xfe not text\n")["id"])
    assert done["status"] == "failed" and done["errors"]["data"][0]["code"] == "invalid_file"
    assert done["output_file_id"] is None


def test_the_batch_routes_need_the_api_key_and_the_batch_carries_it(
        app_on: Callable[..., TestClient]) -> None:
    client = app_on(api_key="sesame")
    assert upload(client, jsonl(completion(0))).status_code == 401
    client.headers["Authorization"] = "Bearer sesame"
    done = ended(client, start(client, jsonl(completion(0)))["id"])
    assert done["request_counts"]["completed"] == 1
