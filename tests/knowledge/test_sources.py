"""Knowledge sources: what a valid source is (each field, durations, URLs), files with the
line of a bad key, the folder registry (writes, deletes, reloads that keep the old sources on a
broken file) and the trigger words that pick sources for a question."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from chinwag.errors import SourceError, UnknownSource
from chinwag.knowledge.sources import (
    Source,
    SourceRegistry,
    load_source_file,
    source_files,
    source_from,
    triggered,
)

FEED = {"kind": "feed", "url": "https://example.org/limbo/weather.rss"}


def problem(fields: dict[str, Any], name: str = "news") -> str:
    """The message ``source_from`` raises for ``fields``."""
    with pytest.raises(SourceError) as caught:
        source_from(fields, name=name, where=f"PUT /sources/{name}")
    return str(caught.value)


# -- what a source is -----------------------------------------------------------------------------

def test_a_feed_source_takes_its_defaults() -> None:
    source = Source(name="weather", **FEED)
    assert (source.describe, source.triggers, source.max_items) == ("", (), 10)
    assert (source.refresh, source.budget_tokens, source.collection) == (600.0, 400, None)


@pytest.mark.parametrize(("given", "seconds"), [
    (90, 90.0), (2.5, 2.5), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("1d", 86400.0),
    ("1.5h", 5400.0), ("45", 45.0), (" 2 M ", 120.0), (0, 0.0),
])
def test_refresh_takes_seconds_or_a_duration(given: object, seconds: float) -> None:
    assert Source(name="w", refresh=given, **FEED).refresh == seconds


@pytest.mark.parametrize("given", ["ten minutes", "10 minutes", "5w", "-1m", "", True,
                                   float("inf")])
def test_refresh_that_is_not_a_duration_is_refused_at_refresh(given: object) -> None:
    assert "PUT /sources/news: refresh: " in problem({**FEED, "refresh": given})


def test_negative_refresh_is_refused() -> None:
    assert "refresh: Input should be greater than or equal to 0" in problem(
        {**FEED, "refresh": -5})


def test_a_page_or_feed_without_a_url_is_refused_at_url() -> None:
    assert "url: a page source needs a url" in problem({"kind": "page"})
    assert "url: a feed source needs a url" in problem({"kind": "feed"})


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "https://",
                                 "https://user:pw@example.org/", "https://exa mple.org/\n"])
def test_a_url_fetch_would_refuse_is_refused_at_url(url: str) -> None:
    message = problem({"kind": "page", "url": url})
    assert "PUT /sources/news: url: refused URL" in message


def test_a_collection_source_needs_its_collection_and_no_url() -> None:
    assert "collection: a collection source names its collection" in problem(
        {"kind": "collection"})
    assert "url: a collection source has no url" in problem(
        {"kind": "collection", "collection": "lore", "url": "https://example.org/"})
    assert "collection: only a collection source" in problem({**FEED, "collection": "lore"})
    assert Source(name="lore", kind="collection", collection="lore").url is None


@pytest.mark.parametrize(("fields", "where"), [
    ({"url": "https://example.org/"}, "kind: Field required"),
    ({**FEED, "kind": "video"}, "kind: Input should be 'page', 'feed' or 'collection'"),
    ({**FEED, "max_items": 0}, "max_items: Input should be greater than or equal to 1"),
    ({**FEED, "budget_tokens": 8}, "budget_tokens: Input should be greater than or equal to 16"),
    ({**FEED, "triggers": ["rain", "  "]}, "triggers: a trigger is empty"),
    ({**FEED, "triggers": "rain"}, "triggers: Input should be a valid tuple"),
    ({**FEED, "colour": "red"}, "colour: Extra inputs are not permitted"),
])
def test_each_bad_field_is_named(fields: dict[str, Any], where: str) -> None:
    assert where in problem(fields)


def test_a_bad_name_is_refused() -> None:
    assert "name: String should match pattern" in problem(FEED, name="no spaces")
    with pytest.raises(ValidationError):
        Source(name="a/b", **FEED)


def test_a_body_naming_another_source_is_refused() -> None:
    assert "name: 'other' is not the name in the path ('news')" in problem(
        {**FEED, "name": "other"})
    assert source_from({**FEED, "name": "news"}, name="news", where="here").name == "news"


def test_a_body_that_is_not_a_mapping_is_refused() -> None:
    assert "a source must be a mapping" in problem(["kind", "feed"])  # type: ignore[arg-type]


def test_the_yaml_written_loads_back_to_the_same_source(tmp_path: Path) -> None:
    source = Source(name="weather", describe="Today's weather in Limbo: «sunny»",
                    triggers=("rain", "will it snow"), max_items=3, refresh=90.5,
                    budget_tokens=64, **FEED)
    (tmp_path / "weather.yaml").write_text(source.to_yaml(), encoding="utf-8")
    assert load_source_file(tmp_path / "weather.yaml") == source


# -- files ----------------------------------------------------------------------------------------

def test_a_file_is_named_after_its_stem_unless_it_names_itself(tmp_path: Path) -> None:
    (tmp_path / "weather.yaml").write_text("kind: feed\nurl: https://example.org/w.rss\n")
    (tmp_path / "b.yml").write_text("name: lore\nkind: collection\ncollection: lore\n")
    found = source_files(tmp_path)
    assert list(found) == ["lore", "weather"]
    assert found["weather"][1] == tmp_path / "weather.yaml"
    assert found["lore"] == (Source(name="lore", kind="collection", collection="lore"),
                             tmp_path / "b.yml")


def test_an_invalid_field_is_reported_with_the_file_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "weather.yaml"
    path.write_text("kind: feed\nurl: https://example.org/w.rss\n\nrefresh: ten minutes\n")
    with pytest.raises(SourceError) as caught:
        load_source_file(path)
    assert str(caught.value).startswith(f"{path}:4: refresh: 'ten minutes' is not a duration")
    assert (caught.value.path, caught.value.line) == (str(path), 4)


def test_a_bad_url_in_a_file_is_reported_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "news.yaml"
    path.write_text("kind: page\ndescribe: News\nurl: gopher://example.org/\n")
    with pytest.raises(SourceError, match=r"news\.yaml:3: url: refused URL"):
        load_source_file(path)


def test_broken_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: feed\nurl: [unclosed\n")
    with pytest.raises(SourceError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_source_file(path)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- kind: feed\n")
    with pytest.raises(SourceError, match=r"list\.yaml:1: a source must be a mapping"):
        load_source_file(path)


def test_a_missing_folder_has_no_sources_and_a_file_is_not_a_folder(tmp_path: Path) -> None:
    assert source_files(tmp_path / "nowhere") == {}
    (tmp_path / "file").write_text("")
    with pytest.raises(SourceError, match="not a folder"):
        source_files(tmp_path / "file")


def test_two_files_defining_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: news\nkind: feed\nurl: https://a.example/\n")
    (tmp_path / "news.yaml").write_text("kind: feed\nurl: https://b.example/\n")
    with pytest.raises(SourceError, match="'news' is defined here and in"):
        source_files(tmp_path)


# -- the registry ---------------------------------------------------------------------------------

def test_put_creates_the_folder_and_a_file_then_replaces_it(tmp_path: Path) -> None:
    folder = tmp_path / "sources"
    registry = SourceRegistry(folder)
    assert registry.all() == {}
    first = Source(name="weather", **FEED)
    assert registry.put(first) is True
    assert load_source_file(folder / "weather.yaml") == first
    second = first.model_copy(update={"refresh": 60.0})
    assert registry.put(second) is False
    assert registry.get("weather") == second == load_source_file(folder / "weather.yaml")
    assert registry.path_of("weather") == folder / "weather.yaml"
    assert sorted(p.name for p in folder.iterdir()) == ["weather.yaml"]  # no temporary left


def test_put_replaces_a_yml_file_of_the_same_source(tmp_path: Path) -> None:
    (tmp_path / "weather.yml").write_text("kind: feed\nurl: https://old.example/\n")
    registry = SourceRegistry(tmp_path)
    assert registry.put(Source(name="weather", **FEED)) is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weather.yaml"]
    assert SourceRegistry(tmp_path).get("weather").url == FEED["url"]


def test_get_and_delete_of_an_unknown_source_list_the_known_ones(tmp_path: Path) -> None:
    registry = SourceRegistry(tmp_path)
    registry.put(Source(name="weather", **FEED))
    with pytest.raises(UnknownSource, match="known sources: weather"):
        registry.get("news")
    with pytest.raises(UnknownSource):
        registry.delete("news")


def test_delete_removes_the_file(tmp_path: Path) -> None:
    registry = SourceRegistry(tmp_path)
    registry.put(Source(name="weather", **FEED))
    registry.delete("weather")
    assert registry.all() == {} and list(tmp_path.iterdir()) == []
    with pytest.raises(UnknownSource):
        registry.path_of("weather")


def test_reload_reads_files_written_by_hand(tmp_path: Path) -> None:
    registry = SourceRegistry(tmp_path)
    (tmp_path / "lore.yaml").write_text("kind: collection\ncollection: lore\n")
    assert registry.all() == {}
    assert list(registry.reload()) == ["lore"]
    assert registry.get("lore").collection == "lore"


def test_reload_keeps_the_old_sources_when_a_file_is_broken(tmp_path: Path) -> None:
    registry = SourceRegistry(tmp_path)
    registry.put(Source(name="weather", **FEED))
    (tmp_path / "broken.yaml").write_text("kind: page\nmax_items: lots\nurl: https://a.example/\n")
    with pytest.raises(SourceError, match=r"broken\.yaml:2: max_items"):
        registry.reload()
    assert list(registry.all()) == ["weather"]


def test_a_broken_file_fails_the_registry_at_start(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: [\n")
    with pytest.raises(SourceError, match="not valid YAML"):
        SourceRegistry(tmp_path)


def test_puts_from_many_threads_all_land(tmp_path: Path) -> None:
    registry = SourceRegistry(tmp_path)

    def put(i: int) -> None:
        registry.put(Source(name=f"s{i}", **FEED))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert list(registry.all()) == sorted(f"s{i}" for i in range(8))
    assert list(registry.reload()) == sorted(f"s{i}" for i in range(8))


# -- triggers -------------------------------------------------------------------------------------

def source(name: str, *triggers: str) -> Source:
    return Source(name=name, kind="collection", collection="c", triggers=triggers)


@pytest.mark.parametrize(("question", "picked"), [
    ("Will it rain?", True), ("RAIN tomorrow", True), ("rain", True),
    ("What is on your brain?", False), ("It is rainy", False), ("terrain", False),
])
def test_a_trigger_matches_whole_words_in_any_case(question: str, picked: bool) -> None:
    assert bool(triggered(question, [source("weather", "rain")])) is picked


def test_a_phrase_matches_as_a_phrase() -> None:
    sources = [source("weather", "weather forecast")]
    assert triggered("What's the Weather\n forecast?", sources) == sources
    assert triggered("The forecast for the weather", sources) == []
    assert triggered("weather forecasting", sources) == []


def test_sources_without_triggers_are_always_picked_in_their_order() -> None:
    always, weather, news = source("always"), source("weather", "rain"), source("news", "news")
    assert triggered("Any news?", [always, weather, news]) == [always, news]
    assert triggered("Hello", [weather, always]) == [always]


def test_triggers_with_symbols_match_as_written() -> None:
    sources = [source("code", "c++")]
    assert triggered("Do you know C++?", sources) == sources
    assert triggered("Do you know c?", sources) == []
