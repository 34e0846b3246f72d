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
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

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
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
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


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.click("#send")


def wait_until_idle(page: Page) -> None:
    """Wait until no answer is streaming: Send enabled, Stop disabled."""
    expect = sync_api.expect
    expect(page.locator("#send")).to_be_enabled(timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#stop")).to_be_disabled()


def has_event_handler_attributes(page: Page, selector: str) -> bool:
    return page.eval_on_selector(selector, """root => [...root.querySelectorAll("*")]
        .some(node => [...node.attributes].some(a => a.name.toLowerCase().startsWith("on")))""")


def test_person_chats_stops_an_answer_and_starts_over(
        server_url: str, page: Page, tmp_path: Path) -> None:
    expect = sync_api.expect
    page.goto(f"{server_url}/")
    expect(page.locator("#model-name")).to_have_text(model_id(server_url))
    expect(page.locator('#persona option[value="villager"]')).to_have_count(1)
    expect(page.locator("#stop")).to_be_disabled()

    # A turn with the villager: the answer streams in, rendered from Markdown and sanitised.
    page.select_option("#persona", "villager")
    page.fill("#prompt", "Hello! What is this place?")
    page.press("#prompt", "Enter")
    expect(page.locator(".message.user")).to_have_text(re.compile("What is this place"))
    answer = page.locator(".message.assistant .content").first
    expect(answer).to_have_text(re.compile(r"\S"), timeout=ANSWER_TIMEOUT_MS)
    wait_until_idle(page)
    assert "<script" not in answer.inner_html().lower()
    assert not has_event_handler_attributes(page, "#messages")

    # A long answer (the counter talks until max_tokens), stopped while it streams.
    page.click("#new-chat")
    expect(page.locator("#messages > *")).to_have_count(0)
    page.select_option("#persona", "counter")
    page.fill("#max_tokens", "400")
    send(page, "Count from 1 to 1000.")
    counting = page.locator(".message.assistant").first
    expect(page.locator("#stop")).to_be_enabled()
    expect(counting).to_have_text(re.compile(r"\d+, \d+, \d+"), timeout=ANSWER_TIMEOUT_MS)
    page.click("#stop")
    wait_until_idle(page)
    expect(counting).to_have_class(re.compile(r"\bstopped\b"))
    stopped_at = counting.inner_text()
    page.wait_for_timeout(1000)
    assert counting.inner_text() == stopped_at, "text kept arriving after Stop"

    # The server is free again, and the next turn carries the stopped one in its history.
    page.fill("#max_tokens", "12")
    send(page, "Count from 1 to 5.")
    expect(page.locator(".message.assistant .content").nth(1)).to_have_text(
        re.compile(r"\S"), timeout=ANSWER_TIMEOUT_MS)
    wait_until_idle(page)
    expect(page.locator("#error")).to_be_hidden()

    screenshot = tmp_path / "chat.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.exists() and screenshot.stat().st_size > 10_000

    page.click("#new-chat")
    expect(page.locator("#messages > *")).to_have_count(0)
    assert page.eval_on_selector("#messages", "m => m.innerHTML") == ""


def test_model_output_cannot_put_html_on_the_page(server_url: str, page: Page) -> None:
    """The page's own Markdown pipeline (the one answers go through) keeps hostile output inert."""
    page.goto(f"{server_url}/")
    sync_api.expect(page.locator('#persona option[value="villager"]')).to_have_count(1)
    rendered = page.evaluate("md => window.chinwag.renderMarkdown(md)", HOSTILE_MARKDOWN)
    assert "<strong>hi</strong>" in rendered
    for bad in ("<script", "onerror", "javascript:", "<img", "example.com"):
        assert bad not in rendered.lower(), rendered
    assert page.evaluate("window.pwned") is None


def test_page_makes_no_request_off_this_machine(server_url: str, page: Page) -> None:
    requests: list[str] = []
    failed: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))

    page.goto(f"{server_url}/")
    sync_api.expect(page.locator('#persona option[value="villager"]')).to_have_count(1)
    page.wait_for_load_state("networkidle")

    remote = [url for url in requests
              if urlsplit(url).scheme != "data" and urlsplit(url).hostname not in LOCAL_HOSTS]
    assert remote == []
    assert f"{server_url}/static/vendor/purify.min.js" in requests
    assert failed == []
