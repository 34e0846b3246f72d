"""Tool calls from Python (``LanguageBackend.chat_tools``, ``Chatbot.send_tools``) on the
scripted backend: the whole answer as a ``Reply``, the call's id, name and arguments, the
decision's scores, and what a chatbot remembers."""

from __future__ import annotations

import json

import pytest

from chinwag import Chatbot, ScriptedBackend, Tool, ToolRequest, get_persona
from chinwag.backends.raw_http import HttpBackend
from chinwag.errors import InvalidParams
from chinwag.types import Message

ADD = Tool("add", "Add two integers", {"type": "object", "properties": {
    "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]})


def test_chat_tools_returns_the_call() -> None:
    backend = ScriptedBackend(['{"name": "add", "arguments": {"a": 2, "b": 3}}'])
    reply = backend.chat_tools([Message("user", "2 + 3?")], ToolRequest((ADD,), "required"))
    assert reply.call is not None and reply.call.name == "add"
    assert json.loads(reply.call.arguments) == {"a": 2, "b": 3}
    assert reply.done.finish_reason == "tool_calls" and reply.text == ""
    assert reply.decision is None


def test_chat_tools_auto_gives_its_decision_and_text() -> None:
    backend = ScriptedBackend(["  Five.  "])
    backend.enqueue_choice(0)
    reply = backend.chat_tools([Message("user", "2 + 3?")], ToolRequest((ADD,)))
    assert reply.text == "Five." and reply.call is None
    assert reply.decision is not None and reply.decision.choice == "reply"
    assert reply.decision.scores["reply"] == 0.0


def test_chatbot_remembers_the_question_and_the_call() -> None:
    backend = ScriptedBackend(['{"name": "add", "arguments": {"a": 1, "b": 1}}'])
    bot = Chatbot(backend, get_persona("assistant"))
    reply = bot.send_tools("What is 1 + 1?", ToolRequest((ADD,), "named", "add"))
    assert reply.call is not None and reply.call.arguments == '{"a": 1, "b": 1}'
    assert [m.content for m in bot.history] == ["What is 1 + 1?",
                                                'add({"a": 1, "b": 1})']
    assert bot.last is reply.done
    assert "Add two integers" in backend.requests[-1].prompt


def test_a_backend_that_cannot_call_tools_says_so() -> None:
    backend = HttpBackend("http://127.0.0.1:9", "/api/v1/generate")
    with pytest.raises(InvalidParams) as e:
        backend.chat_tools([Message("user", "2 + 3?")], ToolRequest((ADD,)))
    assert e.value.code == "tools_not_supported"
