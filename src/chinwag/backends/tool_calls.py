"""Tool calls on a model that does not make them by itself (``capabilities.tools ==
"constrained"``: the llama.cpp, transformers, human and scripted backends).

``auto`` first asks the model whether to reply or which tool to call, and takes the option it
finds most likely (``choose``: the sum of the option's token log-probabilities, not parsed
text); ``required`` and a named tool skip that. The call itself is generated under the JSON
Schema of ``tools.call_schema``: llama.cpp's grammar keeps it to ``{"name", "arguments"}``
with the chosen tools' parameter schemas, and the backend checks the finished JSON with
``jsonschema`` (generating again within ``max_tokens`` where the grammar cannot enforce every
keyword, else ``OutputInvalid`` with the text), so a call that comes back always validates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chinwag.tools import (
    REPLY,
    CallReader,
    ToolRequest,
    call_schema,
    decision_question,
    new_call_id,
)
from chinwag.types import (
    Done,
    Message,
    SamplingParams,
    TokenEvent,
    ToolArguments,
    ToolCallStart,
    ToolDecision,
    ToolStream,
)

if TYPE_CHECKING:
    from chinwag.backends.base import LanguageBackend
    from chinwag.prompting.base import Prompt


def constrained_tool_stream(backend: LanguageBackend, prompt: Prompt, params: SamplingParams,
                            request: ToolRequest) -> ToolStream:
    """The reply to ``prompt`` when ``request``'s tools are offered (see the module
    docstring): a ``ToolDecision`` under ``auto``; then text as ``generate_chat`` streams it,
    or a ``ToolCallStart``, the arguments in pieces, and ``Done("tool_calls")`` (``length``
    with the partial arguments when ``max_tokens`` cut the call).

    Raises:
        OutputInvalid, ContextOverflow, SchemaError, BackendError: as ``generate_chat``.
    """
    if request.mode == "none":
        yield from backend.generate_chat(prompt, params)
        return
    name = request.name
    if request.mode == "auto":
        ask, options = decision_question(request)
        choice = backend.choose(_asking(prompt.messages, ask), options)
        yield ToolDecision(choice.option, dict(zip(options, choice.scores, strict=True)))
        if choice.option == REPLY:
            yield from backend.generate_chat(prompt, params)
            return
        name = choice.option
    own_stop = tuple(s for s in params.stop if s not in prompt.stop)
    call_params = params.with_(json_schema=call_schema(request.selected(name)), stop=own_stop)
    reader, call_id, started = CallReader(), new_call_id(), False
    for event in backend.generate_chat(prompt, call_params):
        if isinstance(event, TokenEvent):
            named, piece = reader.feed(event.text)
            if named is not None:
                started = True
                yield ToolCallStart(call_id, named)
            if piece:
                yield ToolArguments(piece)
            continue
        complete = event.finish_reason == "stop"
        rest = reader.finish(complete)
        if not started:
            yield ToolCallStart(call_id, reader.name or "")
        if rest:
            yield ToolArguments(rest)
        yield Done("tool_calls" if complete else event.finish_reason, event.usage)
        return


def _asking(messages: tuple[Message, ...], ask: Message) -> list[Message]:
    """The chat with the decision question after it: joined to the last message when that is
    the user's (templates such as Gemma's refuse two user turns in a row)."""
    if messages and messages[-1].role == "user" and not messages[-1].tool_calls:
        last = messages[-1]
        return [*messages[:-1], Message("user", f"{last.content}\n\n{ask.content}")]
    return [*messages, ask]
