"""The chat page at ``/``, driven in Debian's chromium through Playwright against a real server.

One ``chinwag serve`` for the module, with two models (``--llm default --llm smollm2
--models-max 1``), one place to generate (``--parallel 1``, so a queue forms on demand) and the
test personas (``counter`` and ``long-counter`` count, ``recall``). These tests check what a
person sees: the name form, answers streamed and rendered safely, the conversations list (open,
continue, rename, delete, export), Stop, Regenerate, Edit, Copy, persona and model pickers,
pinned facts, the place in the queue, accessibility (axe-core, no serious or critical violation)
and that no request leaves the machine. Screenshots of the main states go to
``tests/artifacts/web/``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)")
expect = sync_api.expect

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
ANSWER_TIMEOUT_MS = 90_000
AXE = Path(__file__).parents[1] / "support" / "vendor" / "axe.min.js"
ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "web"
WIDE = {"width": 1280, "height": 860}
NARROW = {"width": 390, "height": 844}
TEST_PERSONAS = Path(__file__).parents[1] / "data" / "personas"  # counter, long-counter, recall

HOSTILE_MARKDOWN = (
    "**hi** <script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 1\">"
    "<a href=\"javascript:window.pwned = 1\">link</a> ![pic](http://example.com/x.png)"
)


@pytest.fixture(scope="module")
def server_url(make_module_server: Callable[..., Any]) -> str:
    server = make_module_server("--llm", "default", "--llm", "smollm2", "--models-max", "1",
                                "--parallel", "1", "--max-queue", "16",
                                env={"CHINWAG_PERSONAS": str(TEST_PERSONAS)})
    return str(server.url)


@pytest.fixture(scope="module")
def models(server_url: str) -> tuple[str, str]:
    """(the default model's id, the other model's id)."""
    listed = httpx.get(f"{server_url}/models", timeout=10).json()
    other = next(m["id"] for m in listed["data"] if m["id"] != listed["default"])
    return listed["default"], other


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def open_page(browser: Browser, server_url: str) -> Iterator[Callable[..., Page]]:
    """Open the chat page in a new browser context: ``open_page(user="ada", **options)``
    (``user``: the name already kept in local storage; None: a first visit). After the test,
    fail on any JavaScript error the page had."""
    contexts = []
    errors: list[str] = []

    def open_(user: str | None = None, **options: Any) -> Page:
        context = browser.new_context(**{"viewport": WIDE, **options})
        contexts.append(context)
        if user is not None:
            context.add_init_script(
                f"localStorage.setItem('chinwag.user', {json.dumps(user)});")
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server_url}/")
        expect(page.locator('#persona option[value="counter"]')).to_have_count(1)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# -- helpers -------------------------------------------------------------------------------------


def answers(page: Page) -> Locator:
    """The answers of the conversation (not a persona's greeting)."""
    return page.locator("#messages .message.assistant:not(.greeting)")


def conversations(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Conversations").locator("li.conversation")


def wait_until_idle(page: Page) -> None:
    """Wait until no answer is streaming: Send enabled, Stop disabled."""
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled(
        timeout=ANSWER_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_disabled()


def say(page: Page, text: str, *, answers_before: int | None = None) -> Locator:
    """Send ``text`` (Enter in the message box) and wait for the whole answer; returns it."""
    count = answers(page).count() if answers_before is None else answers_before
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    answer = answers(page).nth(count)
    expect(answer.locator(".content")).to_have_text(re.compile(r"\S"),
                                                    timeout=ANSWER_TIMEOUT_MS)
    wait_until_idle(page)
    return answer


def setting(page: Page, name: str, value: str) -> None:
    details = page.locator("details", has=page.locator(f"#{name}"))
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    page.fill(f"#{name}", value)
    page.locator(f"#{name}").dispatch_event("change")


def stored(url: str, conversation: str) -> dict[str, Any]:
    return httpx.get(f"{url}/conversations/{conversation}", timeout=10).json()


def current_conversation(url: str, user: str) -> dict[str, Any]:
    listed = httpx.get(f"{url}/users/{user}/conversations", timeout=10).json()["data"]
    return stored(url, listed[0]["id"])


def assert_accessible(page: Page, what: str) -> None:
    """Run axe-core on the page: no violation of impact serious or critical."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    violations = page.evaluate("""async () => (await axe.run(document)).violations.map(v => ({
        id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}))""")
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe, {what}:\n{json.dumps(bad, indent=1)}"


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 5_000


# -- who you are, a conversation, the list ------------------------------------------------------


def test_first_visit_asks_a_name_then_chats_and_finds_it_again_after_a_reload(
        open_page: Callable[..., Page], server_url: str, models: tuple[str, str]) -> None:
    page = open_page(user=None)
    dialog = page.get_by_role("dialog", name="What should we call you?")
    expect(dialog).to_be_visible()
    page.get_by_role("button", name="Start chatting").click()
    expect(dialog).to_be_visible()  # an empty name is not taken
    page.get_by_label("Your name").fill("Ada")
    page.get_by_label("Your name").press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#user-line")).to_have_text("You are Ada")
    assert page.evaluate("localStorage.getItem('chinwag.user')") == "Ada"

    # The villager greets (display only), answers under her character's name, and the model
    # that answered is shown under the answer.
    page.select_option("#persona", "villager")
    greeting = page.locator("#messages .message.greeting")
    expect(greeting.locator(".who")).to_have_text("Bertha")
    expect(greeting.locator(".content")).to_have_text("Well met, traveller! Welcome to Limbo.")
    expect(page.locator("#memory-policy")).to_have_text(
        "Memory: the last 25 messages and a summary of older ones")
    setting(page, "max_tokens", "8")
    answer = say(page, "Hello! What is this place?")
    expect(page.locator("#messages .message.user .who")).to_have_text("Ada")
    expect(answer.locator(".who")).to_have_text("Bertha")
    expect(answer.locator(".model-id")).to_have_text(models[0])
    assert "<script" not in answer.inner_html().lower()
    expect(conversations(page)).to_have_count(1)
    expect(conversations(page).first.locator(".persona")).to_have_text("villager")
    expect(conversations(page).first.locator(".title")).to_have_text(
        re.compile("What is this place"))

    # After a reload: the same name, the villager's settings, the conversation in the list.
    page.reload()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(conversations(page)).to_have_count(1)
    expect(page.locator("#max_tokens")).to_have_value("8")
    conversations(page).first.locator(".open").click()
    expect(page.locator("#messages .message")).to_have_count(2)  # no greeting in a stored one
    expect(page.locator("#messages .message.user .content")).to_have_text(
        "Hello! What is this place?")
    say(page, "Is there an inn?", answers_before=1)
    expect(page.locator("#messages .message")).to_have_count(4)
    expect(conversations(page)).to_have_count(1)
    assert len(current_conversation(server_url, "Ada")["messages"]) == 4

    # Another name: another person's (empty) list, and a new chat.
    page.get_by_role("button", name="Change name").click()
    page.get_by_label("Your name").fill("Ada Two")
    page.get_by_label("Your name").press("Enter")
    expect(page.locator("#user-line")).to_have_text("You are Ada Two")
    expect(conversations(page)).to_have_count(0)
    expect(answers(page)).to_have_count(0)


def test_regenerate_edit_and_copy(open_page: Callable[..., Page], server_url: str) -> None:
    page = open_page(user="Bea", permissions=["clipboard-read", "clipboard-write"])
    page.select_option("#persona", "counter")
    setting(page, "max_tokens", "12")
    say(page, "Count from 1 to 5.")
    say(page, "Count from 1 to 3.")
    expect(page.get_by_role("button", name="Regenerate")).to_have_count(1)
    regenerate = answers(page).nth(1).get_by_role("button", name="Regenerate")
    expect(regenerate).to_be_visible()  # on the last answer only

    # Regenerate: the last answer is replaced, nothing is added.
    regenerate.click()
    expect(answers(page)).to_have_count(2)
    expect(answers(page).nth(1).locator(".content")).to_have_text(
        re.compile(r"\S"), timeout=ANSWER_TIMEOUT_MS)
    wait_until_idle(page)
    kept = current_conversation(server_url, "Bea")
    assert [m["role"] for m in kept["messages"]] == ["user", "assistant"] * 2

    # Copy: the answer's text goes to the clipboard.
    answers(page).nth(1).get_by_role("button", name="Copy").click()
    expect(answers(page).nth(1).get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == kept["messages"][3]["content"]

    # Edit the first message: later turns are dropped, the new text is answered.
    page.locator("#messages .message.user").first.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    expect(editor).to_be_focused()
    editor.fill("Count from 1 to 2.")
    page.get_by_role("button", name="Save and send").click()
    expect(page.locator("#messages .message")).to_have_count(2)
    expect(page.locator("#messages .message.user .content")).to_have_text("Count from 1 to 2.")
    expect(answers(page).first.locator(".content")).to_have_text(
        re.compile(r"\S"), timeout=ANSWER_TIMEOUT_MS)
    wait_until_idle(page)
    kept = current_conversation(server_url, "Bea")
    assert [m["role"] for m in kept["messages"]] == ["user", "assistant"]
    assert kept["messages"][0]["content"] == "Count from 1 to 2."


def test_rename_export_and_delete_a_conversation_and_pin_facts(
        open_page: Callable[..., Page], server_url: str) -> None:
    page = open_page(user="Cy")
    page.select_option("#persona", "counter")
    setting(page, "max_tokens", "6")
    say(page, "Count from 1 to 4.")
    item = conversations(page).first
    expect(item).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept("Goats of Limbo"))
    item.get_by_role("button", name="Rename").click()
    expect(item.locator(".title")).to_have_text("Goats of Limbo")

    with page.expect_download() as download_info:
        item.get_by_role("button", name="Export JSON").click()
    exported = json.loads(Path(download_info.value.path()).read_text())
    assert exported["title"] == "Goats of Limbo"
    assert exported["messages"][0]["content"] == "Count from 1 to 4."
    assert download_info.value.suggested_filename.endswith(".json")

    with page.expect_download() as download_info:
        item.get_by_role("button", name="Export Markdown").click()
    markdown = Path(download_info.value.path()).read_text()
    assert "Goats of Limbo" in markdown and "Count from 1 to 4." in markdown
    assert download_info.value.suggested_filename.endswith(".md")

    page.once("dialog", lambda dialog: dialog.accept())
    item.get_by_role("button", name="Delete").click()
    expect(conversations(page)).to_have_count(0)
    expect(page.locator("#no-conversations")).to_be_visible()
    expect(answers(page)).to_have_count(0)  # the open conversation went with it
    listed = httpx.get(f"{server_url}/users/Cy/conversations", timeout=10).json()["data"]
    assert listed == []

    # Pinned facts for this user and persona.
    page.locator("#facts-settings summary").click()
    page.get_by_label("New fact").fill("My goat is called Moss.")
    page.get_by_role("button", name="Add fact").click()
    expect(page.locator("#fact-list li")).to_have_text(["My goat is called Moss."])
    facts = httpx.get(f"{server_url}/users/Cy/facts/counter", timeout=10).json()["data"]
    assert facts == ["My goat is called Moss."]
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Clear facts").click()
    expect(page.locator("#fact-list li")).to_have_count(0)
    expect(page.locator("#no-facts")).to_be_visible()


# -- while answering ----------------------------------------------------------------------------


def test_stop_keeps_the_partial_answer_marked_stopped(open_page: Callable[..., Page]) -> None:
    page = open_page(user="Dee")
    page.select_option("#persona", "long-counter")
    setting(page, "max_tokens", "400")
    page.fill("#prompt", "Count from 1 to 1000.")
    page.press("#prompt", "Enter")
    counting = answers(page).first
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    expect(counting).to_have_text(re.compile(r"\d+, \d+, \d+"), timeout=ANSWER_TIMEOUT_MS)
    page.press("#prompt", "Escape")
    wait_until_idle(page)
    expect(counting).to_have_class(re.compile(r"\bstopped\b"))
    expect(counting.locator(".model-used")).to_contain_text("stopped")
    stopped_at = counting.locator(".content").inner_text()

    # The model is free again, and the conversation goes on; by the time the next answer
    # has arrived, anything the stopped stream still had to say would have arrived too.
    setting(page, "max_tokens", "6")
    say(page, "Count from 1 to 3.")
    expect(page.locator("#error")).to_be_hidden()
    assert counting.locator(".content").inner_text() == stopped_at, "text came after Stop"


def test_a_queued_request_shows_its_place(open_page: Callable[..., Page],
                                          server_url: str) -> None:
    """With one place to generate: one person's answer running, another's waiting; the page's
    request is second in line, then first, then answered."""
    page = open_page(user="Eve")
    page.select_option("#persona", "counter")
    setting(page, "max_tokens", "6")
    stop = threading.Event()
    running, waiting = threading.Event(), threading.Event()

    def occupy(user: str, reached: threading.Event, event: str) -> None:
        body = {"user": user, "text": "Count from 1 to 1000.", "params": {"max_tokens": 1500}}
        with httpx.stream("POST", f"{server_url}/chat/long-counter", json=body,
                          timeout=120) as reply:
            for line in reply.iter_lines():
                if line == f"event: {event}":
                    reached.set()
                if stop.is_set():
                    return

    threads = [threading.Thread(target=occupy, args=("hog-1", running, "token"), daemon=True)]
    threads[0].start()
    try:
        assert running.wait(60), "the first request never started answering"
        threads.append(threading.Thread(target=occupy, args=("hog-2", waiting, "queued"),
                                        daemon=True))
        threads[1].start()
        assert waiting.wait(30), "the second request was never queued"
        page.fill("#prompt", "Count from 1 to 3.")
        page.press("#prompt", "Enter")
        place = answers(page).first.locator(".waiting")
        expect(place).to_have_text("1 person ahead of you", timeout=30_000)
        stop.set()
        expect(answers(page).first.locator(".content")).to_have_text(
            re.compile(r"\S"), timeout=ANSWER_TIMEOUT_MS)
        expect(place).to_have_count(0)
        wait_until_idle(page)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


def test_persona_and_model_pickers(open_page: Callable[..., Page],
                                   models: tuple[str, str]) -> None:
    default, other = models
    page = open_page(user="Flo")
    picker = page.get_by_label("Model")
    expect(picker).to_be_visible()
    expect(picker.locator("option")).to_have_count(3)
    expect(picker.locator("option").first).to_have_text("Persona's default")
    assert set(picker.locator("option").all_inner_texts()[1:]) == {default, other}

    page.select_option("#persona", "counter")
    setting(page, "max_tokens", "6")
    picker.select_option(other)
    answer = say(page, "Count from 1 to 3.")
    expect(answer.locator(".who")).to_have_text("Counter")
    expect(answer.locator(".model-id")).to_have_text(other)

    # Another persona: a new chat, on the persona's own model again.
    page.select_option("#persona", "recall")
    expect(answers(page)).to_have_count(0)
    picker.select_option("")
    setting(page, "max_tokens", "6")
    answer = say(page, "My name is Flo.")
    expect(answer.locator(".who")).to_have_text("Clerk")
    expect(answer.locator(".model-id")).to_have_text(default)
    expect(conversations(page)).to_have_count(2)
    expect(conversations(page).locator(".persona")).to_have_text(["recall", "counter"])


def test_the_sources_an_answer_used_are_listed_under_it(
        open_page: Callable[..., Page]) -> None:
    page = open_page(user="Gus")
    page.select_option("#persona", "villager")
    setting(page, "max_tokens", "8")
    answer = say(page, "|CONTEXT|The goat of the village is called Moss.|/CONTEXT| Who is Moss?")
    sources = answer.locator(".sources")
    expect(sources.locator("summary")).to_have_text("Sources (1)")
    expect(sources.locator("li")).to_have_text(re.compile(r"^context \(\d+ tokens\)$"))
    expect(page.locator("#error")).to_be_hidden()


def test_sources_with_links_and_the_api_key_on_every_request(
        open_page: Callable[..., Page]) -> None:
    """A canned event stream (the page's route to the server replaced) with a source that has
    a URL: its link opens in a new tab without a referrer. Every request carries the key."""
    page = open_page(user="Kit")
    page.evaluate("localStorage.setItem('chinwag.apiKey', 'sekrit')")
    page.reload()
    expect(page.locator('#persona option[value="counter"]')).to_have_count(1)
    sent: list[tuple[str, str | None]] = []
    page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
    stream = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in [
        ("conversation", {"conversation": "c-canned", "title": "Moss", "model": "m-1",
                          "persona": "counter"}),
        ("queued", {"ahead": 2}),
        ("sources", {"sources": [{"kind": "page", "title": "The goat Moss",
                                  "url": "https://example.org/moss", "tokens": 12},
                                 {"kind": "page", "url": "https://example.org/mill"}]}),
        ("token", {"text": "Moss is **a goat**."}),
        ("done", {"conversation": "c-canned", "finish_reason": "stop", "model": "m-1",
                  "question_seq": 0, "reply_seq": 1}),
    ])
    page.route("**/chat/counter", lambda route: route.fulfill(
        status=200, content_type="text/event-stream", body=stream))
    page.select_option("#persona", "counter")
    answer = say(page, "Who is Moss?")
    expect(answer.locator(".content strong")).to_have_text("a goat")
    expect(answer.locator(".model-id")).to_have_text("m-1")
    links = answer.locator(".sources a")
    expect(links).to_have_text(["The goat Moss", "https://example.org/mill"])
    for i in range(2):
        assert links.nth(i).get_attribute("target") == "_blank"
        assert links.nth(i).get_attribute("rel") == "noopener noreferrer"
    assert links.first.get_attribute("href") == "https://example.org/moss"
    api = [(url, key) for url, key in sent if "/static/" not in url]
    assert any(url.endswith("/chat/counter") for url, _ in api), api
    assert all(key == "Bearer sekrit" for _, key in api), api


# -- safety --------------------------------------------------------------------------------------


def test_model_output_cannot_put_html_on_the_page(open_page: Callable[..., Page]) -> None:
    """The page's own Markdown pipeline (the one answers go through) keeps hostile output inert."""
    page = open_page(user="Hal")
    rendered = page.evaluate("md => window.chinwag.renderMarkdown(md)", HOSTILE_MARKDOWN)
    assert "<strong>hi</strong>" in rendered
    for bad in ("<script", "onerror", "javascript:", "<img", "example.com"):
        assert bad not in rendered.lower(), rendered
    assert page.evaluate("window.pwned") is None


def test_page_makes_no_request_off_this_machine(browser: Browser, server_url: str) -> None:
    context = browser.new_context(viewport=WIDE)
    try:
        page = context.new_page()
        requests: list[str] = []
        failed: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
        page.goto(f"{server_url}/")
        page.get_by_label("Your name").fill("Ida")
        page.get_by_label("Your name").press("Enter")
        expect(page.locator('#persona option[value="villager"]')).to_have_count(1)
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    remote = [url for url in requests
              if urlsplit(url).scheme not in ("data", "blob")
              and urlsplit(url).hostname not in LOCAL_HOSTS]
    assert remote == []
    assert f"{server_url}/static/vendor/purify.min.js" in requests
    assert failed == []


# -- accessibility and the look ----------------------------------------------------------------


def test_main_states_are_accessible_light_and_dark_wide_and_narrow(
        open_page: Callable[..., Page]) -> None:
    page = open_page(user=None, bypass_csp=True)  # axe is injected as an inline script
    assert_accessible(page, "the name form")
    screenshot(page, "name-form-light-wide")
    page.get_by_label("Your name").fill("Jo")
    page.get_by_label("Your name").press("Enter")
    page.select_option("#persona", "villager")
    assert_accessible(page, "an empty chat")
    screenshot(page, "empty-light-wide")

    # Keyboard: Tab from the message box reaches Send, with a visible focus ring.
    page.focus("#prompt")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_focused()
    assert page.eval_on_selector("#send", "b => getComputedStyle(b).outlineStyle") == "solid"

    setting(page, "max_tokens", "8")
    say(page, "Hello!")
    assert_accessible(page, "a conversation with an answer")
    screenshot(page, "conversation-light-wide")

    page.emulate_media(color_scheme="dark")
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    assert_accessible(page, "a conversation, dark")
    screenshot(page, "conversation-dark-wide")

    page.set_viewport_size(NARROW)
    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_be_visible()
    expect(page.get_by_role("navigation", name="Conversations")).to_be_hidden()
    assert_accessible(page, "narrow, dark")
    screenshot(page, "conversation-dark-narrow")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(conversations(page)).to_have_count(1)
    assert_accessible(page, "narrow, dark, the menu open")
    screenshot(page, "menu-dark-narrow")
    conversations(page).first.locator(".open").click()
    expect(page.get_by_role("navigation", name="Conversations")).to_be_hidden()

    page.emulate_media(color_scheme="light")
    assert_accessible(page, "narrow, light")
    screenshot(page, "conversation-light-narrow")
