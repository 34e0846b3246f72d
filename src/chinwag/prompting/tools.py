"""Tools in a prompt: the model's own template when it shows tools, else a plain block of text
in the system prompt (``chinwag.tools.describe_tools``) with the tool messages folded into it.
"""

from __future__ import annotations

from collections.abc import Sequence

from chinwag.prompting.base import ChatFormat, Prompt, Speakers
from chinwag.tools import ToolRequest, describe_tools, fold_tool_messages
from chinwag.types import Message


class ToolsFormat:
    """A template that shows tools (``JinjaChatFormat.supports_tools``), rendering every
    prompt with the request's tools (OpenAI's shape)."""

    def __init__(self, inner: ChatFormat, tools: list[dict[str, object]]) -> None:
        self.inner, self.tools, self.name = inner, tools, inner.name

    def render(self, messages: Sequence[Message], speakers: Speakers = Speakers()) -> Prompt:
        return self.inner.render(messages, speakers, tools=self.tools)  # type: ignore[call-arg]


def with_tools(chat_format: ChatFormat, preamble: Sequence[Message],
               messages: Sequence[Message], tools: ToolRequest | None, *,
               upstream: bool = False
               ) -> tuple[list[Message], list[Message], ChatFormat]:
    """The preamble, messages and chat format of a turn that offers ``tools`` or has tool
    messages.

    - ``upstream`` (the backend's server renders tools itself) or a format that shows tools:
      the messages as they are (the format gets ``tools``: ``ToolsFormat``);
    - any other format: the tool messages folded into lines (``fold_tool_messages``) and the
      block of ``describe_tools`` added to the first system message (one is made when there
      is none: templates such as Gemma's take a single system message, first).
    """
    if upstream or getattr(chat_format, "supports_tools", False):
        if tools is None or upstream:
            return list(preamble), list(messages), chat_format
        return list(preamble), list(messages), ToolsFormat(
            chat_format, [t.as_openai() for t in tools.tools])
    kept, history = fold_tool_messages(messages)
    if tools is not None:
        block = describe_tools(tools, history)
    else:
        block = "\n".join(["Tool calls made so far, and their results:", *history])
    if preamble and preamble[0].role == "system":
        return [Message("system", f"{preamble[0].content}\n\n{block}"), *preamble[1:]], \
            kept, chat_format
    if not preamble and kept and kept[0].role == "system":
        return [], [Message("system", f"{kept[0].content}\n\n{block}"), *kept[1:]], \
            chat_format
    return [Message("system", block), *preamble], kept, chat_format
