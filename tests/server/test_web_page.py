"""The chat page at ``/``, driven in Debian's chromium through Playwright against a real server.

The page talks only to the server's OpenAI-compatible API; these tests check what a person sees:
personas listed, answers streamed and rendered safely, Stop, New chat, and no request leaving
the machine.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
ANSWER_TIMEOUT_MS = 90_000

# A persona that talks for as long as it is allowed to, so that there is time to press Stop.
COUNTER = """\
name: counter
character: Counter
description: a machine that counts out loud
user_name: User
system_prompt: >-
  {name} is {description}. It always counts as far as it is asked, one number after another.
examples:
  - user: Count from 1 to 30.
    assistant: >-
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
      21, 22, 23, 24, 25, 26, 27, 28, 29, 30.
sampling: {temperature: 0, repeat_penalty: 1.0, max_tokens: 40}
"""

HOSTILE_MARKDOWN = (
    "**hi** <script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 1\">"
    "<a href=\"javascript:window.pwned = 1\">link</a> ![pic](http://example.com/x.png)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_health(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until ``GET /health`` answers 200 (at most 120 s); fail with the server's log."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"chinwag serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"chinwag serve did not answer /health in 120 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``chinwag serve`` on a free port, with the built-in personas and ``counter``."""
    folder = tmp_path_factory.mktemp("web")
    (folder / "personas").mkdir()
    (folder / "personas" / "counter.yaml").write_text(COUNTER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHINWAG_", "LLM_"))}
    env["CHINWAG_PERSONAS"] = str(folder / "personas")
    port = free_port()
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chinwag", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--n-ctx", "2048"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def model_id(url: str) -> str:
    models = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
    return next(m["id"] for m in models if m["owned_by"] == "chinwag")


def send(page: object, text: str) -> None:
    page.fill("#prompt", text)  # type: ignore[attr-defined]
    page.click("#send")  # type: ignore[attr-defined]


def wait_until_idle(page: object) -> None:
    """Wait until no answer is streaming: Send enabled, Stop disabled."""
    expect = sync_api.expect
    expect(page.locator("#send")).to_be_enabled(timeout=ANSWER_TIMEOUT_MS)  # type: ignore[attr-defined]
    expect(page.locator("#stop")).to_be_disabled()  # type: ignore[attr-defined]


def test_person_chats_stops_an_answer_and_starts_over(
        server_url: str, page: object, tmp_path: Path) -> None:
    expect = sync_api.expect
    p = page
    p.goto(f"{server_url}/")  # type: ignore[attr-defined]

    expect(p.locator("#model-name")).to_have_text(model_id(server_url))  # type: ignore[attr-defined]
    expect(p.locator('#persona option[value="villager"]')).to_have_count(1)  # type: ignore[attr-defined]
    expect(p.locator("#stop")).to_be_disabled()  # type: ignore[attr-defined]

    # One turn with the villager, answered in Markdown rendered as sanitised HTML.
    p.select_option("#persona", "villager")  # type: ignore[attr-defined]
    p.fill("#prompt", "Hello! What is this place?")  # type: ignore[attr-defined]
    p.press("#prompt", "Enter")  # type: ignore[attr-defined]
    expect(p.locator(".message.user")).to_have_text(re.compile("What is this place"))  # type: ignore[attr-defined]
    answer = p.locator(".message.assistant .content").first  # type: ignore[attr-defined]
    expect(answer).to_have_text(re.compile(r"\S"), timeout=ANSWER_TIMEOUT_MS)
    wait_until_idle(p)
    html = answer.inner_html()
    assert "<script" not in html.lower() and " on" not in html.lower().replace(" on ", " ")

    # The page's own pipeline keeps hostile model output inert.
    rendered = p.evaluate("md => window.chinwag.renderMarkdown(md)", HOSTILE_MARKDOWN)  # type: ignore[attr-defined]
    assert "<strong>hi</strong>" in rendered
    for bad in ("<script", "onerror", "javascript:", "<img", "example.com"):
        assert bad not in rendered.lower(), rendered
    assert p.evaluate("window.pwned") is None  # type: ignore[attr-defined]

    # A long answer, stopped while it streams.
    p.fill("#max_tokens", "400")  # type: ignore[attr-defined]
    send(p, "Tell me the whole story of Limbo, every house and every person, at great length.")
    long_answer = p.locator(".message.assistant .content").nth(1)  # type: ignore[attr-defined]
    expect(p.locator("#stop")).to_be_enabled()  # type: ignore[attr-defined]
    expect(long_answer).to_have_text(re.compile(r"\S"), timeout=ANSWER_TIMEOUT_MS)
    if p.locator("#stop").is_enabled():  # type: ignore[attr-defined]
        p.click("#stop")  # type: ignore[attr-defined]
    wait_until_idle(p)

    # The counter talks for all its 400 tokens unless stopped: stop it for sure.
    p.click("#new-chat")  # type: ignore[attr-defined]
    p.select_option("#persona", "counter")  # type: ignore[attr-defined]
    send(p, "Count from 1 to 1000.")
    counting = p.locator(".message.assistant").first  # type: ignore[attr-defined]
    expect(p.locator("#stop")).to_be_enabled()  # type: ignore[attr-defined]
    expect(counting).to_have_text(re.compile(r"\d+, \d+, \d+"), timeout=ANSWER_TIMEOUT_MS)
    p.click("#stop")  # type: ignore[attr-defined]
    wait_until_idle(p)
    expect(counting).to_have_class(re.compile(r"\bstopped\b"))
    stopped_at = counting.inner_text()
    p.wait_for_timeout(1000)  # type: ignore[attr-defined]
    assert counting.inner_text() == stopped_at, "text kept arriving after Stop"
    assert "1000" not in stopped_at

    # The server is free again: the next turn is answered.
    p.fill("#max_tokens", "12")  # type: ignore[attr-defined]
    send(p, "Count from 1 to 5.")
    expect(p.locator(".message.assistant .content").nth(1)).to_have_text(  # type: ignore[attr-defined]
        re.compile(r"\S"), timeout=ANSWER_TIMEOUT_MS)
    wait_until_idle(p)
    expect(p.locator("#error")).to_be_hidden()  # type: ignore[attr-defined]

    screenshot = tmp_path / "chat.png"
    p.screenshot(path=str(screenshot), full_page=True)  # type: ignore[attr-defined]
    assert screenshot.exists() and screenshot.stat().st_size > 10_000

    p.click("#new-chat")  # type: ignore[attr-defined]
    expect(p.locator("#messages > *")).to_have_count(0)  # type: ignore[attr-defined]
    assert p.eval_on_selector("#messages", "m => m.innerHTML") == ""  # type: ignore[attr-defined]


def test_page_makes_no_request_off_this_machine(server_url: str, page: object) -> None:
    requests: list[str] = []
    failed: list[str] = []
    page.on("request", lambda request: requests.append(request.url))  # type: ignore[attr-defined]
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))  # type: ignore[attr-defined]

    page.goto(f"{server_url}/")  # type: ignore[attr-defined]
    sync_api.expect(page.locator('#persona option[value="villager"]')).to_have_count(1)  # type: ignore[attr-defined]
    page.wait_for_load_state("networkidle")  # type: ignore[attr-defined]

    remote = [url for url in requests
              if urlsplit(url).scheme != "data" and urlsplit(url).hostname not in LOCAL_HOSTS]
    assert remote == []
    assert f"{server_url}/static/vendor/purify.min.js" in requests
    assert failed == []
