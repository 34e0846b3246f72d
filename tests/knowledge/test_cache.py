"""The page cache against the page server on 127.0.0.1 (``conftest.py``), its clock injected:
a fresh copy is not fetched again, an expired one is revalidated with its ETag (a 304 keeps it,
a 200 replaces it), a failure is raised and not kept, copies are keyed by ``max_items``, the
least recently used go first, and two threads asking at once make one fetch."""

from __future__ import annotations

import ipaddress
import threading

import httpx
import pytest

from chinwag.errors import FetchError
from chinwag.knowledge.cache import PageCache
from chinwag.knowledge.fetch import FetchPolicy
from support.pages import PageServer
from support.waiting import wait_until

LOCAL = FetchPolicy(allow_private=(ipaddress.ip_network("127.0.0.1/32"),))


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> PageCache:
    return PageCache(clock=clock)


def test_a_fresh_copy_is_not_fetched_again(pages: PageServer, cache: PageCache,
                                           clock: Clock) -> None:
    first = cache.get(pages.url("/changing"), LOCAL, refresh=60)
    assert first.text == "Version one of the page."
    clock.now += 59
    assert cache.get(pages.url("/changing"), LOCAL, refresh=60) is first
    assert len(pages.requests_to("/changing")) == 1


def test_an_expired_copy_is_revalidated_and_a_304_keeps_it(pages: PageServer, cache: PageCache,
                                                           clock: Clock) -> None:
    first = cache.get(pages.url("/changing"), LOCAL, refresh=60)
    clock.now += 60
    assert cache.get(pages.url("/changing"), LOCAL, refresh=60) is first
    asked = pages.requests_to("/changing")
    assert len(asked) == 2
    assert "if-none-match" not in asked[0] and asked[1]["if-none-match"] == '"v1"'
    clock.now += 30  # the 304 started its age again
    assert cache.get(pages.url("/changing"), LOCAL, refresh=60) is first
    assert len(pages.requests_to("/changing")) == 2


def test_a_changed_page_replaces_the_copy(pages: PageServer, cache: PageCache,
                                          clock: Clock) -> None:
    cache.get(pages.url("/changing"), LOCAL, refresh=60)
    pages.changing = ('"v2"', "Version two.")
    clock.now += 61
    second = cache.get(pages.url("/changing"), LOCAL, refresh=60)
    assert second.text == "Version two."
    clock.now += 61
    assert cache.get(pages.url("/changing"), LOCAL, refresh=60) is second
    assert pages.requests_to("/changing")[2]["if-none-match"] == '"v2"'


def test_refresh_zero_asks_the_server_every_time(pages: PageServer, cache: PageCache) -> None:
    first = cache.get(pages.url("/changing"), LOCAL, refresh=0)
    assert cache.get(pages.url("/changing"), LOCAL, refresh=0) is first
    assert len(pages.requests_to("/changing")) == 2


def test_a_failure_is_raised_and_not_cached(pages: PageServer, cache: PageCache) -> None:
    for _ in range(2):
        with pytest.raises(FetchError) as caught:
            cache.get(pages.url("/missing"), LOCAL)
        assert caught.value.code == "http_status"
    assert len(pages.requests_to("/missing")) == 2
    assert len(cache) == 0


def test_a_failed_revalidation_keeps_the_old_copy_for_later(pages: PageServer,
                                                            clock: Clock) -> None:
    cache = PageCache(clock=clock)
    first = cache.get(pages.url("/changing"), LOCAL, refresh=60)
    clock.now += 61
    with pytest.raises(FetchError) as caught:
        cache.get(pages.url("/changing"), FetchPolicy(), refresh=60)  # loopback refused
    assert caught.value.code == "blocked_address"
    assert cache.get(pages.url("/changing"), LOCAL, refresh=60) is first  # 304
    assert [h.get("if-none-match") for h in pages.requests_to("/changing")] == [None, '"v1"']


def test_copies_are_kept_per_max_items(pages: PageServer, cache: PageCache) -> None:
    two = cache.get(pages.url("/feed"), LOCAL, max_items=2)
    three = cache.get(pages.url("/feed"), LOCAL, max_items=3)
    assert (two.kind, two.title) == ("feed", "Limbo news")
    assert two.text.count("\n- ") == 1 and three.text.count("\n- ") == 2
    assert cache.get(pages.url("/feed"), LOCAL, max_items=2) is two
    assert len(pages.requests_to("/feed")) == 2
    cache.forget(pages.url("/feed"))
    assert len(cache) == 0


def test_the_least_recently_used_copy_goes_first(pages: PageServer, clock: Clock) -> None:
    cache = PageCache(max_entries=2, clock=clock)
    page = cache.get(pages.url("/page"), LOCAL)
    cache.get(pages.url("/changing"), LOCAL)
    assert cache.get(pages.url("/page"), LOCAL) is page  # now the most recently used
    cache.get(pages.url("/feed"), LOCAL)  # evicts /changing
    assert len(cache) == 2
    assert cache.get(pages.url("/page"), LOCAL) is page
    cache.get(pages.url("/changing"), LOCAL)
    assert len(pages.requests_to("/page")) == 1
    assert len(pages.requests_to("/changing")) == 2


def test_two_threads_asking_at_once_make_one_fetch(cache: PageCache) -> None:
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        entered.set()
        assert release.wait(30)
        return httpx.Response(200, text="slow news", headers={"Content-Type": "text/plain"})

    policy = FetchPolicy(allow_private=LOCAL.allow_private,
                         transport=httpx.MockTransport(answer))
    got: list[str] = []

    def get() -> None:
        got.append(cache.get("http://127.0.0.1/news", policy).text)

    first = threading.Thread(target=get)
    first.start()
    assert entered.wait(30)
    second = threading.Thread(target=get)
    second.start()
    # the second thread is waiting on the key's lock (the cache's own count of its users)
    wait_until(lambda: cache._key_locks[("http://127.0.0.1/news", 10)].users == 2,
               what="the second get waits for the first")
    release.set()
    first.join()
    second.join()
    assert got == ["slow news", "slow news"] and len(calls) == 1
    assert cache._key_locks == {}  # no lock is kept for a key nobody is using
