"""The chat page at ``/``, driven in Debian's chromium through Playwright against a real server.

The page talks only to the server's OpenAI-compatible API; these tests check what a person sees:
personas listed, answers streamed and rendered safely, Stop, New chat, and no request leaving
the machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
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

HOSTILE_MARKDOWN = (
    "**hi** <script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 1\">"
    "<a href=\"javascript:window.pwned = 1\">link</a> ![pic](http://example.com/x.png)"
)


@pytest.fixture(scope="module")
def server_url(server: Any) -> str:
    """The session's real ``chinwag serve`` (built-in personas and ``counter``)."""
    return str(server.url)


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


def test_the_sources_an_answer_used_are_listed_under_it(server_url: str, page: Page) -> None:
    expect = sync_api.expect
    page.goto(f"{server_url}/")
    expect(page.locator('#persona option[value="villager"]')).to_have_count(1)
    page.select_option("#persona", "villager")
    page.fill("#max_tokens", "8")
    send(page, "|CONTEXT|The goat of the village is called Moss.|/CONTEXT| Who is Moss?")
    sources = page.locator(".message.assistant .sources")
    expect(sources.locator("summary")).to_have_text("Sources (1)", timeout=ANSWER_TIMEOUT_MS)
    expect(sources.locator("li")).to_have_text(re.compile(r"^context \(\d+ tokens\)$"))
    wait_until_idle(page)
    expect(page.locator("#error")).to_be_hidden()
