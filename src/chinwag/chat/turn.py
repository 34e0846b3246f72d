"""One chat turn, built in one place for every caller.

A turn is what a model is asked to do next in a chat: the persona's preamble (system prompt with
pinned facts and the running summary, example exchanges), the messages that fit in the context
window, rendered in the chat format the backend and persona agree on, and the sampling settings
for the reply (the format's stop strings, ``max_tokens`` within the room left). ``Chatbot``
(the CLI, scripts, the persona endpoints) and the OpenAI route both call ``build_turn``; context
documents, tools and NPC context join the turn here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chinwag.backends.base import LanguageBackend
from chinwag.chat.fitting import fit_messages
from chinwag.chat.persona import Persona
from chinwag.errors import ContextOverflow
from chinwag.prompting.base import Prompt, Speakers, reply_params
from chinwag.prompting.tools import with_tools
from chinwag.tools import ToolRequest, has_tool_messages
from chinwag.types import ContextPiece, Message, SamplingParams


@dataclass(frozen=True)
class Turn:
    """A chat turn ready to generate.

    Attributes:
        prompt: the rendered prompt (its ``messages`` are what was sent).
        params: the sampling settings for the reply: the format's stop strings added (not
            under a JSON schema), ``max_tokens`` at most the room left in the context window.
        prompt_tokens: the prompt's length, tokens.
        dropped: how many of the turn's messages were left out to fit (oldest first).
    """

    prompt: Prompt
    params: SamplingParams
    prompt_tokens: int
    dropped: int


def build_turn(backend: LanguageBackend, persona: Persona | None,
               messages: Sequence[Message], params: SamplingParams, *,
               user: str | None = None, summary: str = "", facts: Sequence[str] = (),
               context: Sequence[ContextPiece] = (), reserve: int | None = None, drop: bool = True,
               counts: Sequence[int | None] | None = None,
               tools: ToolRequest | None = None) -> Turn:
    """Build the turn that answers ``messages`` as ``persona`` (None: the model itself, with
    no preamble and the backend's own chat format).

    Args:
        backend: the model the turn is for (its context window, tokenizer and formats).
        persona: who answers; its preamble is never dropped, and its ``chat_format`` is used
            when the backend's model brings no template of its own.
        messages: the conversation so far, ending with the message to answer.
        params: the sampling settings asked for (persona settings already applied).
        user: the person's name in the transcript and the system prompt.
        summary: the running summary of what fell out of the conversation's window.
        facts: the user's pinned facts, sent with the system prompt.
        context: knowledge (pages, feeds, collection chunks, literal context), sent with
            the system prompt, before the conversation and the question (only with a
            persona).
        reserve: tokens to keep free for the reply while fitting (default:
            ``params.max_tokens``; the OpenAI route passes what the client asked for, or 0).
        drop: leave out the oldest messages when the chat does not fit (False: OpenAI's
            default, the request fails instead).
        counts: the content token count of each message, where known (stored with it).
        tools: the tools the reply may call. A chat format that shows tools (a model's own
            template, ``JinjaChatFormat.supports_tools``) gets them and the tool messages as
            they are, as does a backend whose server renders them (``capabilities.tools ==
            "upstream"``); for any other, they are described in a plain block of the system
            prompt (``tools.describe_tools``), with the tool messages folded into it.

    Raises:
        ContextOverflow: the prompt does not fit, or leaves no room for one token of reply
            (both counts given).
        FormatError: the chat format cannot express these messages.
    """
    preamble = persona.preamble(user, summary=summary, facts=facts,
                                context=context) if persona else []
    speakers = persona.speakers(user) if persona else Speakers()
    chat_format = backend.format_for(persona.chat_format if persona else None)
    if tools is not None or has_tool_messages(messages):
        preamble, messages, chat_format = with_tools(
            chat_format, preamble, messages, tools,
            upstream=backend.capabilities.tools == "upstream")
        counts = None
    fitted = fit_messages(backend, preamble, messages, speakers=speakers,
                          chat_format=chat_format,
                          reserve=params.max_tokens if reserve is None else reserve,
                          drop=drop, counts=counts)
    room = backend.context_length - fitted.prompt_tokens
    if room < 1:
        raise ContextOverflow(fitted.prompt_tokens, backend.context_length)
    reply = reply_params(fitted.prompt, params)
    if reply.max_tokens > room:
        reply = reply.with_(max_tokens=room)
    return Turn(fitted.prompt, reply, fitted.prompt_tokens, fitted.dropped)

