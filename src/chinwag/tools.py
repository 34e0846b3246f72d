"""Tool calling (OpenAI's ``tools`` and ``tool_choice``): the tools a request offers, the call
a model makes, and what every backend needs to prompt for a call and read it back.

A model that does not call tools by itself is made to: the call is JSON generated under the
schema ``call_schema`` builds (``{"name": <a tool's name>, "arguments": <its parameters>}``,
llama.cpp's grammar enforcing it, ``jsonschema`` checking it after), read as it streams by
``CallReader``. Whether to call at all (``tool_choice: "auto"``) is decided first, by the
model's likelihood of each answer to ``decision_question`` (``LanguageBackend.choose``). A chat
format that knows tools (a model's own template that renders a ``tools`` variable) gets the
tools and the tool messages as they are; any other gets them as one plain block of text in the
system prompt (``describe_tools``), the tool messages folded into it (``fold_tool_messages``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chinwag.errors import InvalidParams, SchemaError
from chinwag.json_schema import check_json_schema
from chinwag.types import (
    ChatEvent,
    Done,
    Message,
    TokenEvent,
    ToolArguments,
    ToolCall,
    ToolCallStart,
    ToolDecision,
)

ToolChoiceMode = Literal["none", "auto", "required", "named"]
REPLY = "reply"
"""The ``auto`` decision's option for answering in text rather than calling a tool."""
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for a function's name


@dataclass(frozen=True)
class Tool:
    """A function the model may call (OpenAI's ``{"type": "function", "function": {...}}``).

    Attributes:
        name: letters, digits, ``_`` and ``-``, at most 64 (OpenAI's rule).
        description: what it does, for the model.
        parameters: the JSON Schema of its arguments (an object schema).
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}})

    def as_openai(self) -> dict[str, Any]:
        """OpenAI's shape: ``{"type": "function", "function": {name, description,
        parameters}}``."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolRequest:
    """The tools of one request and how the model may use them.

    Attributes:
        tools: the tools offered (at least one).
        mode: ``none`` (describe them, never call), ``auto`` (the model decides), ``required``
            (call one of them), ``named`` (call ``name``).
        name: the tool to call when ``mode`` is ``named``.

    Raises:
        InvalidParams: no tools, two tools of one name, a name OpenAI would refuse, a named
            tool that is not offered, or a parameters schema that is not valid or that chinwag
            can neither enforce nor check (param ``tools``, naming the tool and the keyword).
    """

    tools: tuple[Tool, ...]
    mode: ToolChoiceMode = "auto"
    name: str | None = None

    def __post_init__(self) -> None:
        if not self.tools:
            raise InvalidParams("tools must list at least one tool", param="tools")
        seen: set[str] = set()
        for i, tool in enumerate(self.tools):
            where = f"tools[{i}].function"
            if not _NAME.match(tool.name):
                raise InvalidParams(f"{where}.name {tool.name!r} must be 1-64 letters, digits, "
                                    "'_' or '-'", param=f"{where}.name")
            if tool.name in seen:
                raise InvalidParams(f"two tools are named {tool.name!r}", param=f"{where}.name")
            seen.add(tool.name)
            try:
                check_json_schema(tool.parameters)
            except SchemaError as e:
                raise InvalidParams(f"tool {tool.name!r}: {e}", param=f"{where}.parameters",
                                    code="invalid_schema") from None
            if tool.parameters.get("type", "object") != "object":
                raise InvalidParams(f"tool {tool.name!r}: parameters must be an object schema",
                                    param=f"{where}.parameters")
        if self.mode == "named" and self.name not in seen:
            raise InvalidParams(f"tool_choice names {self.name!r}, which is not among the "
                                f"tools ({', '.join(sorted(seen))})", param="tool_choice")

    def selected(self, name: str | None = None) -> tuple[Tool, ...]:
        """The tools a call may be made to: ``name``'s (or the named one's), else all."""
        wanted = name or self.name
        return tuple(t for t in self.tools if t.name == wanted) if wanted else self.tools


def call_schema(tools: Sequence[Tool]) -> dict[str, Any]:
    """The JSON Schema of one call to one of ``tools``: ``{"name": const, "arguments":
    <parameters>}``, ``name`` first (so a stream names the tool before its arguments), one
    ``anyOf`` branch per tool when there are several."""
    branches = [{"type": "object", "properties": {"name": {"const": t.name},
                                                   "arguments": t.parameters},
                 "required": ["name", "arguments"], "additionalProperties": False}
                for t in tools]
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def new_call_id() -> str:
    """An id for a call: ``call_`` and 24 hex digits, as OpenAI's look."""
    return f"call_{uuid.uuid4().hex[:24]}"


# -- prompting -----------------------------------------------------------------------------------

def describe_tools(request: ToolRequest, history: Sequence[str] = ()) -> str:
    """The plain block that tells a model without tool support about the tools: each tool
    with its parameter schema, how a call is written (unless ``mode`` is ``none``), and the
    calls made earlier in the chat with their results (``history``, from
    ``fold_tool_messages``)."""
    lines = ["You can use these tools:"]
    for tool in request.tools:
        about = f": {tool.description}" if tool.description else ""
        lines.append(f"- {tool.name}{about}. Arguments (JSON Schema): "
                     f"{json.dumps(tool.parameters, ensure_ascii=False)}")
    if request.mode == "none":
        lines.append("Do not call a tool now; answer in plain text.")
    else:
        lines.append('To call a tool, answer with only a JSON object: {"name": <the tool\'s '
                     'name>, "arguments": <its arguments>}.')
    if history:
        lines.append("Tool calls made so far, and their results:")
        lines.extend(history)
    return "\n".join(lines)


def fold_tool_messages(messages: Sequence[Message]) -> tuple[list[Message], list[str]]:
    """The chat without its tool messages (for a format that cannot show them), and one line
    per earlier call with its result (for ``describe_tools``).

    An assistant message that only called tools is left out (one that also said something
    keeps its text); a ``tool`` message becomes the result of the call it answers (by
    ``tool_call_id``).
    """
    calls: dict[str, ToolCall] = {}
    answered: set[str] = set()
    kept: list[Message] = []
    history: list[str] = []
    for m in messages:
        if m.tool_calls:
            for call in m.tool_calls:
                calls[call.id] = call
            if m.content:
                kept.append(Message(m.role, m.content))
        elif m.role == "tool":
            answered.add(m.tool_call_id or "")
            made = calls.get(m.tool_call_id or "")
            what = f"{made.name}({made.arguments})" if made else f"call {m.tool_call_id}"
            history.append(f"- {what} returned: {m.content}")
        else:
            kept.append(m)
    for call_id, call in calls.items():
        if call_id not in answered:
            history.append(f"- {call.name}({call.arguments}) returned nothing yet")
    return kept, history


def has_tool_messages(messages: Sequence[Message]) -> bool:
    """Whether any message is a tool call or a tool result."""
    return any(m.role == "tool" or m.tool_calls for m in messages)


def decision_question(request: ToolRequest) -> tuple[Message, list[str]]:
    """The question ``auto`` asks the model before answering, and its options: ``reply``
    then each tool's name (scored by ``LanguageBackend.choose``)."""
    names = [t.name for t in request.tools]
    ask = Message("user", "Before answering: should you call a tool, or reply in plain text? "
                  f"Answer with one word: {REPLY}, or the name of the tool to call "
                  f"({', '.join(names)}).")
    return ask, [REPLY, *names]


# -- reading a call as it streams ---------------------------------------------------------------

_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
_TAIL = re.compile(r"\s*(\}\s*)?$")


class CallReader:
    """Reads a call's JSON (``call_schema``) as it arrives: the tool's name once it is
    complete, then the arguments' JSON text in pieces, never more than what the finished
    arguments will be (the closing brace of the call and whitespace are held back until the
    text ends).

    ``feed`` returns the name (once, when first known) and the new piece of arguments text;
    ``finish`` returns the rest. ``name`` and ``arguments`` hold what was read.
    """

    def __init__(self) -> None:
        self._text = ""
        self._start = -1
        self.name: str | None = None
        self.arguments = ""

    def feed(self, piece: str) -> tuple[str | None, str]:
        """Take more generated text; return (the name if it just became known, new
        arguments text)."""
        self._text += piece
        named = None
        if self.name is None:
            head = _HEAD.match(self._text)
            if head is None:
                return None, ""
            self.name = json.loads(f'"{head.group(1)}"')
            self._start = head.end()
            named = self.name
        if not self.arguments:  # the value starts after any whitespace
            while self._start < len(self._text) and self._text[self._start].isspace():
                self._start += 1
        body = self._text[self._start:]
        held = _TAIL.search(body)
        ready = body[:held.start()] if held else body
        new = ready[len(self.arguments):] if ready.startswith(self.arguments) else ""
        self.arguments += new
        return named, new

    def finish(self, complete: bool) -> str:
        """The arguments text not yet returned: up to the end of the arguments' JSON value
        when the call is ``complete``, else all that was generated (a call cut short keeps its
        partial arguments)."""
        if self.name is None:
            head = re.match(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)', self._text)
            self.name = head.group(1) if head else ""
            return ""
        body = self._text[self._start:]
        end = len(body)
        if complete:
            try:
                end = json.JSONDecoder().raw_decode(body)[1]
            except ValueError:
                end = len(body)
        rest = body[len(self.arguments):end] if body.startswith(self.arguments) else ""
        self.arguments += rest
        return rest


def parse_call(text: str, tools: Sequence[Tool]) -> ToolCall:
    """A finished call's JSON as a ``ToolCall`` with a new id (arguments as compact JSON).

    Raises:
        InvalidParams: ``text`` is not a call to one of ``tools`` (for text a person or an
            upstream server wrote).
    """
    try:
        document = json.loads(text)
        name, arguments = document["name"], document["arguments"]
    except (ValueError, KeyError, TypeError):
        raise InvalidParams(f"not a tool call: {text[:200]!r}", param="tools") from None
    if name not in {t.name for t in tools}:
        raise InvalidParams(f"a call to an unknown tool {name!r}", param="tools")
    return ToolCall(new_call_id(), name, json.dumps(arguments, ensure_ascii=False))


# -- a whole answer -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """The whole answer to a chat that offered tools.

    Attributes:
        text: the text (empty when the answer is only a call).
        done: the closing event (finish reason ``tool_calls`` after a whole call).
        call: the call made, or None.
        decision: what ``auto`` decided, and why (the scores), or None.
    """

    text: str
    done: Done
    call: ToolCall | None = None
    decision: ToolDecision | None = None


class ReplyCollector:
    """Gathers a tool stream's events (``add``) into a ``Reply`` (``reply``); the one place
    events become a whole answer, for the server and for Python callers."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._call: list[str] = []
        self._decision: ToolDecision | None = None

    def add(self, event: ChatEvent) -> Reply | None:
        """Take one event; the ``Reply`` once ``event`` is the ``Done``, else None."""
        if isinstance(event, Done):
            call = ToolCall(self._call[0], self._call[1], "".join(self._call[2:])) \
                if self._call else None
            return Reply("".join(self._text), event, call, self._decision)
        if isinstance(event, TokenEvent):
            self._text.append(event.text)
        elif isinstance(event, ToolCallStart):
            self._call = [event.id, event.name]
        elif isinstance(event, ToolArguments):
            self._call.append(event.text)
        else:
            self._decision = event
        return None
