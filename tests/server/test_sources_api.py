"""``/sources`` in-process on the scripted backend, the sources folder in a temporary one: list,
read, write (201 then 200, the file written), bad fields (400 ``invalid_source``, nothing
written), delete, reload (files edited by hand; a broken one keeps the old sources) and the API
key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chinwag.knowledge.sources import load_source_file
from chinwag.settings import Settings
from support.server import error_of

WEATHER = {"kind": "feed", "url": "https://example.org/limbo/weather.rss",
           "describe": "Today's weather in Limbo:", "triggers": ["rain", "weather"],
           "refresh": "10m"}


@pytest.fixture
def client(make_app: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    return make_app(Settings(sources_dir=tmp_path / "sources"))


def folder_of(client: TestClient) -> Path:
    return Path(client.app.state.chinwag.settings.user_sources_dir())  # type: ignore[attr-defined]


def test_an_empty_folder_lists_no_sources(client: TestClient) -> None:
    assert client.get("/sources").json() == {"object": "list", "data": []}


def test_put_creates_then_replaces_and_writes_the_file(client: TestClient) -> None:
    created = client.put("/sources/weather", json=WEATHER)
    assert created.status_code == 201
    body = created.json()
    path = folder_of(client) / "weather.yaml"
    assert body == {"object": "source", "name": "weather", "kind": "feed",
                    "url": WEATHER["url"], "describe": WEATHER["describe"],
                    "triggers": ["rain", "weather"], "max_items": 10, "refresh": 600,
                    "budget_tokens": 400, "file": str(path)}
    assert load_source_file(path).refresh == 600.0
    replaced = client.put("/sources/weather", json={**WEATHER, "name": "weather",
                                                    "max_items": 3})
    assert replaced.status_code == 200 and replaced.json()["max_items"] == 3
    assert load_source_file(path).max_items == 3
    assert client.get("/sources/weather").json() == replaced.json()


def test_list_is_sorted_by_name(client: TestClient) -> None:
    client.put("/sources/weather", json=WEATHER)
    client.put("/sources/lore", json={"kind": "collection", "collection": "lore"})
    listed = client.get("/sources").json()
    assert [s["name"] for s in listed["data"]] == ["lore", "weather"]
    assert listed["data"][0] == {"object": "source", "name": "lore", "kind": "collection",
                                 "collection": "lore", "describe": "", "triggers": [],
                                 "max_items": 10, "refresh": 600, "budget_tokens": 400,
                                 "file": str(folder_of(client) / "lore.yaml")}


def test_an_unknown_source_is_a_404(client: TestClient) -> None:
    client.put("/sources/weather", json=WEATHER)
    missing = client.get("/sources/news")
    assert missing.status_code == 404
    error = error_of(missing)
    assert error["code"] == "source_not_found" and "known sources: weather" in error["message"]


@pytest.mark.parametrize(("fields", "named"), [
    ({**WEATHER, "url": "file:///etc/passwd"}, "url: refused URL"),
    ({"kind": "page"}, "url: a page source needs a url"),
    ({**WEATHER, "refresh": "soon"}, "refresh: 'soon' is not a duration"),
    ({**WEATHER, "max_items": 0}, "max_items: "),
    ({**WEATHER, "colour": "red"}, "colour: Extra inputs are not permitted"),
    (["not", "an", "object"], "a source must be a mapping"),
])
def test_a_bad_field_is_a_400_invalid_source_and_nothing_is_written(
        client: TestClient, fields: object, named: str) -> None:
    refused = client.put("/sources/weather", json=fields)
    assert refused.status_code == 400
    error = error_of(refused)
    assert error["code"] == "invalid_source"
    assert error["message"].startswith("PUT /sources/weather: ")
    assert named in error["message"]
    assert not folder_of(client).exists()
    assert client.get("/sources").json()["data"] == []


def test_a_body_naming_another_source_is_a_400(client: TestClient) -> None:
    refused = client.put("/sources/weather", json={**WEATHER, "name": "news"})
    assert refused.status_code == 400 and error_of(refused)["code"] == "invalid_source"
    assert "not the name in the path" in error_of(refused)["message"]


def test_a_body_that_is_not_json_is_a_400(client: TestClient) -> None:
    refused = client.put("/sources/weather", content=b"kind: feed",
                         headers={"Content-Type": "application/json"})
    assert refused.status_code == 400
    error_of(refused)


def test_delete_removes_the_source_and_its_file(client: TestClient) -> None:
    client.put("/sources/weather", json=WEATHER)
    deleted = client.delete("/sources/weather")
    assert deleted.json() == {"id": "weather", "object": "source", "deleted": True}
    assert not (folder_of(client) / "weather.yaml").exists()
    assert client.get("/sources/weather").status_code == 404
    again = client.delete("/sources/weather")
    assert again.status_code == 404 and error_of(again)["code"] == "source_not_found"


def test_reload_reads_files_written_by_hand(client: TestClient) -> None:
    client.put("/sources/weather", json=WEATHER)
    (folder_of(client) / "lore.yml").write_text("kind: collection\ncollection: lore\n")
    assert [s["name"] for s in client.get("/sources").json()["data"]] == ["weather"]
    reloaded = client.post("/sources/reload")
    assert reloaded.status_code == 200
    assert [s["name"] for s in reloaded.json()["data"]] == ["lore", "weather"]
    assert client.get("/sources/lore").json()["file"].endswith("lore.yml")


def test_reload_with_a_broken_file_is_a_400_and_keeps_the_old_sources(
        client: TestClient) -> None:
    client.put("/sources/weather", json=WEATHER)
    (folder_of(client) / "broken.yaml").write_text("kind: page\nurl: https://a.example/\n"
                                                   "refresh: whenever\n")
    refused = client.post("/sources/reload")
    assert refused.status_code == 400
    error = error_of(refused)
    assert error["code"] == "invalid_source" and "broken.yaml:3: refresh" in error["message"]
    assert [s["name"] for s in client.get("/sources").json()["data"]] == ["weather"]


def test_sources_a_server_starts_with_are_listed(make_app: Callable[..., TestClient],
                                                 tmp_path: Path) -> None:
    (tmp_path / "news.yaml").write_text("kind: page\nurl: https://example.org/news\n")
    client = make_app(Settings(sources_dir=tmp_path))
    assert client.get("/sources/news").json()["url"] == "https://example.org/news"


def test_the_sources_want_the_api_key(make_app: Callable[..., TestClient],
                                      tmp_path: Path) -> None:
    client = make_app(Settings(sources_dir=tmp_path, api_key="sesame"))
    for method, path in [("GET", "/sources"), ("GET", "/sources/x"), ("PUT", "/sources/x"),
                         ("DELETE", "/sources/x"), ("POST", "/sources/reload")]:
        refused = client.request(method, path, json=WEATHER)
        assert refused.status_code == 401, (method, path)
        assert error_of(refused)["code"] == "invalid_api_key"
    assert not list(tmp_path.iterdir())
    put = client.put("/sources/x", json=WEATHER, headers={"Authorization": "Bearer sesame"})
    assert put.status_code == 201
    assert client.get("/sources", headers={"X-Api-Key": "sesame"}).status_code == 200
