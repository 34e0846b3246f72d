"""Knowledge in a chat turn, on the scripted backend with pages fetched for real from the
local page server: the context is in the prompt, before the question, within its budget;
kept with a stored conversation; sources reported, failures too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chinwag.backends.scripted import ScriptedBackend
from chinwag.chat.chatbot import Chatbot
from chinwag.chat.persona import Persona
from chinwag.errors import FetchError, InvalidParams, UnknownSource
from chinwag.knowledge.service import Knowledge, merge_context
from chinwag.settings import Settings
from chinwag.store import Store
from chinwag.types import ContextPiece
from support.pages import PageServer


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "chinwag.db") as opened:
        yield opened  # type: ignore[misc]


@pytest.fixture
def knowledge(tmp_path: Path, store: Store) -> Knowledge:
    return Knowledge(Settings(fetch_allow_private=["127.0.0.1/32"],
                              sources_dir=tmp_path / "sources"), store)


def persona(**fields: Any) -> Persona:
    return Persona.model_validate({"name": "villager", "character": "Bertha",
                                   "system_prompt": "You are {name}.", **fields})


def prompt_text(backend: ScriptedBackend, n: int = -1) -> str:
    return backend.requests[n].prompt


def test_a_url_puts_the_page_before_the_question_and_keeps_it_for_later_turns(
        pages: PageServer, store: Store, knowledge: Knowledge) -> None:
    backend = ScriptedBackend(["She is nineteen.", "Moss."])
    bot = Chatbot(backend, persona(), user="ann", store=store, knowledge=knowledge)
    "".join(bot.send(pages.url("/article") + " How old is Moss?"))
    first = prompt_text(backend)
    assert "The oldest goat is called Moss" in first
    assert first.index("The oldest goat") < first.index("How old is Moss?")
    assert pages.url("/article") not in first.split("How old is Moss?")[1]
    assert [r.name for r in bot.last_sources] == [pages.url("/article")]
    assert bot.last_sources[0].title == "Goats of Limbo" and bot.last_sources[0].tokens > 0
    assert bot.history[0].content == "How old is Moss?"  # the question is what is stored

    again = Chatbot(backend, persona(), user="ann", store=store,
                    conversation=bot.conversation_id, knowledge=knowledge)
    "".join(again.send("And what is her name?"))
    assert "The oldest goat is called Moss" in prompt_text(backend)
    assert len(pages.requests_to("/article")) == 1  # kept with the conversation
    assert [r.name for r in again.last_sources] == [pages.url("/article")]


def test_a_url_alone_asks_for_a_summary(pages: PageServer, knowledge: Knowledge) -> None:
    backend = ScriptedBackend(["A feed."])
    bot = Chatbot(backend, persona(), knowledge=knowledge)
    "".join(bot.send(pages.url("/feed")))
    assert "Summarise this." in prompt_text(backend)
    assert "Moss the goat left the village at dawn." in prompt_text(backend)
    assert bot.last_sources[0].kind == "feed"


def test_a_page_over_its_budget_keeps_the_chunks_that_answer_the_question(
        pages: PageServer, knowledge: Knowledge) -> None:
    backend = ScriptedBackend(["Ada."])
    bot = Chatbot(backend, persona(context={"budget_tokens": 300}), knowledge=knowledge)
    "".join(bot.send(pages.url("/long") + " Who built the stone bridge?"))
    sent = bot.context[0]
    assert "built by Ada Quarry in 1802" in sent.text
    assert sent.tokens <= 300 < backend.count_tokens(pages.url("/long")) + 2000
    assert "built by Ada Quarry" in prompt_text(backend)


def test_literal_context_is_used_and_kept_once(knowledge: Knowledge, store: Store) -> None:
    backend = ScriptedBackend(["Blue.", "Yes."])
    bot = Chatbot(backend, persona(), user="bo", store=store, knowledge=knowledge)
    "".join(bot.send("|CONTEXT|The door of the mill is painted blue.|/CONTEXT| What colour?"))
    "".join(bot.send("|CONTEXT|The door of the mill is painted blue.|/CONTEXT| Sure?"))
    assert prompt_text(backend).count("painted blue") == 1
    assert [p.kind for p in store.context(bot.conversation_id or "")] == ["text"]


def test_an_unterminated_context_is_an_error_and_nothing_is_stored(
        knowledge: Knowledge, store: Store) -> None:
    bot = Chatbot(ScriptedBackend(), persona(), user="cy", store=store, knowledge=knowledge)
    with pytest.raises(InvalidParams):
        "".join(bot.send("|CONTEXT|no end here"))
    assert store.messages(bot.conversation_id or "") == []


def test_a_failed_page_is_reported_and_the_answer_comes_without_it(
        pages: PageServer, knowledge: Knowledge) -> None:
    backend = ScriptedBackend(["I could not read it."])
    bot = Chatbot(backend, persona(), knowledge=knowledge)
    assert "".join(bot.send(pages.url("/missing") + " What?")) == "I could not read it."
    assert [(r.name, r.error) for r in bot.last_sources] == \
        [(pages.url("/missing"), "http_status")]


def test_on_source_error_fail_raises_the_fetch_error(pages: PageServer,
                                                     knowledge: Knowledge) -> None:
    bot = Chatbot(ScriptedBackend(), persona(context={"on_source_error": "fail"}),
                  knowledge=knowledge)
    with pytest.raises(FetchError) as caught:
        "".join(bot.send(pages.url("/png") + " What?"))
    assert caught.value.code == "unsupported_content_type"


def inline(pages: PageServer, **fields: Any) -> dict[str, Any]:
    return {"name": "news", "kind": "feed", "url": pages.url("/feed"),
            "describe": "The village news:", "triggers": ["news", "goat"], **fields}


def test_triggers_pick_a_source_for_a_question(pages: PageServer,
                                               knowledge: Knowledge) -> None:
    backend = ScriptedBackend(["Hello.", "It escaped."])
    bot = Chatbot(backend, persona(sources=[inline(pages)]), knowledge=knowledge)
    "".join(bot.send("Hello there"))
    assert "village news" not in prompt_text(backend) and bot.last_sources == []
    "".join(bot.send("Any goat news?"))
    assert "The village news:\n- The goat escaped" in prompt_text(backend)
    assert bot.last_sources[0].name == "news"


def test_rag_names_a_source_and_an_unknown_one_is_an_error(pages: PageServer,
                                                           knowledge: Knowledge) -> None:
    backend = ScriptedBackend(["It escaped."])
    bot = Chatbot(backend, persona(sources=[inline(pages, triggers=["zzz"])]),
                  knowledge=knowledge)
    "".join(bot.send("|RAG|news|/RAG| What happened?"))
    assert "The goat escaped" in prompt_text(backend)
    with pytest.raises(UnknownSource):
        "".join(bot.send("|RAG|weather|/RAG| Rain?"))


def test_a_persona_naming_a_missing_source_is_reported_not_raised(
        knowledge: Knowledge) -> None:
    bot = Chatbot(ScriptedBackend(["Hi."]), persona(sources=["nowhere"]), knowledge=knowledge)
    "".join(bot.send("Hello"))
    assert [(r.name, r.error) for r in bot.last_sources] == [("nowhere", "source_not_found")]


def piece(key: str, tokens: int) -> ContextPiece:
    return ContextPiece(key, key, "page", "x", tokens)


def test_merging_replaces_by_key_and_drops_the_oldest_over_the_budget() -> None:
    kept = [piece("a", 40), piece("b", 40)]
    merged, gone = merge_context(kept, [piece("a", 30), piece("c", 40)], 100)
    assert [p.key for p in merged] == ["a", "c"] and gone == ["b"]
    alone, _ = merge_context([], [piece("huge", 500)], 100)
    assert [p.key for p in alone] == ["huge"]  # the newest always stays


def test_a_persona_may_let_the_model_choose_its_source(pages: PageServer,
                                                       knowledge: Knowledge) -> None:
    weather = inline(pages, name="weather", url=pages.url("/atom"), describe="Weather:",
                     triggers=["zzz"])
    news = inline(pages, triggers=["zzz"])
    backend = ScriptedBackend(["Storms.", "Nothing."])
    chooser = persona(sources=[news, weather], context={"choose_sources": "model"})
    bot = Chatbot(backend, chooser, knowledge=knowledge)
    backend.enqueue_choice(1)  # weather, although no trigger matches
    "".join(bot.send("Should I take a cloak tomorrow?"))
    picked = next(r for r in backend.requests if r.options)
    assert picked.options == ("news", "weather", "none")
    assert "Should I take a cloak tomorrow?" in picked.prompt
    assert [r.name for r in bot.last_sources] == ["weather"]
    assert "Storm on Thursday" in backend.requests[-1].prompt
    backend.enqueue_choice(2)  # none
    "".join(bot.send("Hello"))
    assert [r.name for r in bot.last_sources] == ["weather"]  # kept from the first turn
    assert len(pages.requests_to("/feed")) == 0


def test_an_inline_source_with_a_bad_url_is_a_persona_error_at_its_line(
        tmp_path: Path) -> None:
    from chinwag.chat.persona import load_persona_file
    from chinwag.errors import PersonaError

    path = tmp_path / "p.yaml"
    path.write_text("system_prompt: You are {name}.\nsources:\n  - name: news\n"
                    "    kind: feed\n    url: file:///etc/passwd\n")
    with pytest.raises(PersonaError, match=r"p\.yaml:\d+: sources\.0"):
        load_persona_file(path)


def test_a_small_collection_goes_in_whole_and_a_big_one_by_its_best_chunks(
        knowledge: Knowledge) -> None:
    knowledge.collections.add("lore", "Mill", "The mill grinds the village's corn.")
    knowledge.collections.add("lore", "Bridge", "Ada Quarry built the stone bridge.")
    backend = ScriptedBackend(["Ada.", "Ada."])
    bot = Chatbot(backend, persona(knowledge={"collections": ["lore"], "top_k": 1}),
                  knowledge=knowledge)
    "".join(bot.send("Who built the bridge?"))
    sent = backend.requests[-1].prompt
    assert "From the collection lore:" in sent
    assert "- Mill: The mill grinds" in sent and "- Bridge: Ada Quarry" in sent  # all fits
    assert [(r.name, r.kind) for r in bot.last_sources] == [("lore", "collection")]

    for i in range(80):  # now over WHOLE_COLLECTION_CHUNKS: searched, top_k = 1
        knowledge.collections.add("lore", f"Filler {i}", f"Nothing about anything {i}.")
    "".join(bot.send("Who built the bridge?"))
    sent = backend.requests[-1].prompt
    assert "- Bridge: Ada Quarry" in sent and "The mill grinds" not in sent
