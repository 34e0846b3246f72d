"""build_turn: the one place a chat turn is built (Chatbot and the OpenAI route both use it)."""

from __future__ import annotations

import pytest

from chinwag.backends.scripted import ScriptedBackend
from chinwag.chat import Chatbot, get_persona
from chinwag.chat.turn import build_turn
from chinwag.errors import ContextOverflow
from chinwag.types import Message, SamplingParams

ASK = [Message("user", "Hello there")]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}}


def test_the_formats_stop_strings_are_added_after_the_callers_own() -> None:
    turn = build_turn(ScriptedBackend(), get_persona("villager"), ASK,
                      SamplingParams(stop=("END",)))
    assert turn.params.stop[0] == "END" and "\nTraveller:" in turn.params.stop
    assert turn.prompt.text.endswith("Traveller: Hello there\nBertha:")


def test_under_a_json_schema_only_the_callers_stop_strings_apply() -> None:
    turn = build_turn(ScriptedBackend(), get_persona("villager"), ASK,
                      SamplingParams(stop=("END",), json_schema=SCHEMA))
    assert turn.params.stop == ("END",)


def test_max_tokens_never_exceeds_the_room_left() -> None:
    backend = ScriptedBackend(context_length=200)
    turn = build_turn(backend, get_persona("villager"), ASK, SamplingParams(max_tokens=500),
                      reserve=0)
    assert turn.params.max_tokens == 200 - turn.prompt_tokens > 0


def test_no_room_for_a_single_token_is_a_context_overflow() -> None:
    backend = ScriptedBackend(context_length=4)
    with pytest.raises(ContextOverflow):
        build_turn(backend, None, [Message("user", "one two three four")], SamplingParams(),
                   reserve=0, drop=False)


def test_the_model_itself_has_no_preamble() -> None:
    turn = build_turn(ScriptedBackend(), None, ASK, SamplingParams())
    assert [m.role for m in turn.prompt.messages] == ["user"]


def test_user_facts_and_summary_join_the_system_prompt() -> None:
    turn = build_turn(ScriptedBackend(), get_persona("villager"), ASK, SamplingParams(),
                      user="Zed", summary="They met at the well.", facts=["Zed likes owls."])
    system = turn.prompt.messages[0].content
    assert "They met at the well." in system and "Zed likes owls." in system


def test_chatbot_and_backend_chat_agree_on_stops_under_a_schema() -> None:
    backend = ScriptedBackend(['{"name": "Bertha"}', '{"name": "Bertha"}'])
    bot = Chatbot(backend, get_persona("villager"), json_schema=SCHEMA, stop=("END",))
    assert "".join(bot.send("Who are you?")) == '{"name": "Bertha"}'
    list(backend.chat(ASK, SamplingParams(stop=("END",), json_schema=SCHEMA)))
    assert [r.params.stop for r in backend.requests] == [("END",), ("END",)]  # type: ignore[union-attr]
