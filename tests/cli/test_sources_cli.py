"""``chinwag sources list | show | test | reload`` in-process with typer's CliRunner: a sources
folder in a temporary one, ``test`` against a page server on 127.0.0.1 (``support.pages``),
``reload`` against no server and against a real server (uvicorn in a thread, on a scripted
backend)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from chinwag.backends.scripted import ScriptedBackend
from chinwag.cli.app import app
from chinwag.server import create_app
from chinwag.settings import Settings
from support.pages import PageServer
from support.waiting import wait_until

LOCAL = {"CHINWAG_FETCH_ALLOW_PRIVATE": "127.0.0.1/32"}



@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "weather.yaml").write_text(
        "kind: feed\nurl: https://example.org/weather.rss\ntriggers: [rain, snow]\n"
        "refresh: 1h\n")
    (tmp_path / "lore.yml").write_text("kind: collection\ncollection: limbo-lore\n")
    return tmp_path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["sources", *args], env={"COLUMNS": "200", **(env or {})})


def test_list_shows_each_source(folder: Path) -> None:
    result = run("list", "--sources", str(folder))
    assert result.exit_code == 0, result.output
    assert "weather" in result.output and "https://example.org/weather.rss" in result.output
    assert "rain, snow" in result.output and "1h" in result.output
    assert "lore" in result.output and "limbo-lore" in result.output
    assert "(always)" in result.output


def test_list_reads_the_folder_of_the_settings(folder: Path) -> None:
    result = run("list", env={"CHINWAG_SOURCES": str(folder)})
    assert result.exit_code == 0 and "limbo-lore" in result.output


def test_list_of_an_empty_folder_says_so(tmp_path: Path) -> None:
    result = run("list", "--sources", str(tmp_path / "none"))
    assert result.exit_code == 0 and "No sources in" in result.output


def test_list_shows_the_good_sources_and_fails_on_a_broken_file(folder: Path) -> None:
    (folder / "broken.yaml").write_text("kind: feed\nurl: https://a.example/\nmax_items: x\n")
    result = run("list", "--sources", str(folder))
    assert result.exit_code == 1
    assert "weather" in result.output
    assert "broken.yaml:3: max_items" in result.output


def test_show_prints_the_file(folder: Path) -> None:
    result = run("show", "weather", "--sources", str(folder))
    assert result.exit_code == 0, result.output
    assert result.output == (f"# {folder / 'weather.yaml'}\n"
                             + (folder / "weather.yaml").read_text())


def test_show_is_not_stopped_by_another_broken_file(folder: Path) -> None:
    (folder / "broken.yaml").write_text("kind: [\n")
    assert run("show", "weather", "--sources", str(folder)).exit_code == 0
    result = run("show", "broken", "--sources", str(folder))
    assert result.exit_code == 1 and "broken.yaml:2: not valid YAML" in result.output


def test_show_of_an_unknown_source_lists_the_known_ones(folder: Path) -> None:
    result = run("show", "news", "--sources", str(folder))
    assert result.exit_code == 1
    assert "unknown source 'news'; known sources: lore, weather" in result.output


def test_test_fetches_a_feed_and_shows_its_first_lines(tmp_path: Path,
                                                        pages: PageServer) -> None:
    (tmp_path / "news.yaml").write_text(f"kind: feed\nurl: {pages.url('/feed')}\nmax_items: 2\n")
    result = run("test", "news", "--sources", str(tmp_path), env=LOCAL)
    assert result.exit_code == 0, result.output
    assert "title: Limbo news" in result.output
    assert f"url: {pages.url('/feed')}" in result.output and "kind: feed" in result.output
    assert "words: " in result.output
    assert "The goat escaped" in result.output and "Market day" in result.output
    assert "Rain expected" not in result.output  # max_items: 2


def test_test_of_a_page_that_fails_prints_its_code(tmp_path: Path, pages: PageServer) -> None:
    (tmp_path / "gone.yaml").write_text(f"kind: page\nurl: {pages.url('/missing')}\n")
    result = run("test", "gone", "--sources", str(tmp_path), env=LOCAL)
    assert result.exit_code == 1
    assert "fetch failed (http_status)" in result.output and "answered 404" in result.output


def test_test_refuses_loopback_unless_the_settings_allow_it(tmp_path: Path,
                                                             pages: PageServer) -> None:
    (tmp_path / "local.yaml").write_text(f"kind: page\nurl: {pages.url('/page')}\n")
    result = run("test", "local", "--sources", str(tmp_path))
    assert result.exit_code == 1 and "fetch failed (blocked_address)" in result.output
    assert pages.seen == []


def test_test_of_a_collection_points_to_knowledge_search(folder: Path) -> None:
    result = run("test", "lore", "--sources", str(folder))
    assert result.exit_code == 0
    assert "limbo-lore" in result.output and "chinwag knowledge search" in result.output


def unused_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_reload_without_a_server_says_so() -> None:
    port = unused_port()
    result = run("reload", "--url", f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert f"no server at http://127.0.0.1:{port}" in result.output


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(url, sources folder)`` of a real server (uvicorn in a thread, on a scripted
    backend, with the API key ``sesame``), stopped after the test."""
    folder = tmp_path / "served"
    app = create_app(Settings(sources_dir=folder, api_key="sesame"), ScriptedBackend())
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), what="uvicorn started")
        assert server.started
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", folder
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def test_reload_makes_a_running_server_read_its_folder(serving: tuple[str, Path]) -> None:
    url, folder = serving
    folder.mkdir()
    (folder / "news.yaml").write_text("kind: page\nurl: https://example.org/news\n")
    result = run("reload", "--url", url, env={"CHINWAG_API_KEY": "sesame"})
    assert result.exit_code == 0, result.output
    assert f"the server at {url} has 1 source(s)" in result.output


def test_reload_prints_the_servers_error(serving: tuple[str, Path]) -> None:
    url, folder = serving
    folder.mkdir()
    (folder / "bad.yaml").write_text("kind: page\n")
    result = run("reload", "--url", url, "--api-key", "sesame")
    assert result.exit_code == 1
    assert "bad.yaml: url: a page source needs a url" in result.output
    no_key = run("reload", "--url", url)
    assert no_key.exit_code == 1 and "missing API key" in no_key.output
