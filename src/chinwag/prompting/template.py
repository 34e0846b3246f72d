"""Chat formats written as Jinja2 templates: a model's own ``chat_template`` or a named format.

Instruction-tuned models ship a Jinja2 ``chat_template`` (in ``tokenizer_config.json`` on
Hugging Face, in the ``tokenizer.chat_template`` key of a GGUF file). ``JinjaChatFormat`` renders
such a template the way ``transformers``' ``apply_chat_template`` does, so that a prompt here is
byte for byte the prompt the model was trained on:

- an ``ImmutableSandboxedEnvironment`` (a template can read its variables but not change them,
  nor reach Python internals), with ``trim_blocks=True`` and ``lstrip_blocks=True``;
- the ``loopcontrols`` extension (``{% break %}``, ``{% continue %}``) and the ``{% generation %}``
  block, which ``transformers`` uses to mark assistant text and which renders its body here;
- globals ``raise_exception(message)`` and ``strftime_now(format)``, and a ``tojson`` filter that
  does not escape HTML (``json.dumps`` with ``ensure_ascii=False``);
- variables ``messages`` (a list of ``{"role", "content"}`` dicts, with ``tool_calls`` and
  ``tool_call_id`` where a message has them), ``add_generation_prompt`` (always true: the
  prompt ends where the assistant's reply starts), ``bos_token``, ``eos_token`` and, when a
  request offers tools, ``tools`` (OpenAI's shape).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from chinwag.errors import FormatError
from chinwag.prompting.base import Prompt, Speakers
from chinwag.types import Message

# Errors a template can raise while rendering, besides Jinja's own ``TemplateError``: adding a
# string to a number, indexing past the end of a list, and the like.
_RENDER_ERRORS = (jinja2.TemplateError, TypeError, ValueError, LookupError, ArithmeticError)
_NO_SPEAKERS = Speakers()


class _GenerationBlock(Extension):
    """``{% generation %}...{% endgeneration %}``: renders its body unchanged.

    ``transformers`` uses the block to find the assistant's tokens when training; templates that
    contain it would not compile without this extension.
    """

    tags = {"generation"}  # noqa: RUF012 (jinja2 declares ``tags`` as a set on the class)

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: str) -> NoReturn:
    raise FormatError(str(message))


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


_PROBE_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "probe_tool_7f3a", "description": "Probe.",
    "parameters": {"type": "object", "properties": {}}}}


def _as_template_message(message: Message) -> dict[str, Any]:
    """A message as Hugging Face chat templates read it."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.name, "arguments": _arguments(c.arguments)}} for c in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols", _GenerationBlock],
    )
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.filters["tojson"] = _tojson
    return env


class JinjaChatFormat:
    """A chat format defined by a Hugging Face / GGUF-style Jinja2 ``chat_template``.

    Args:
        template: the Jinja2 source of the template.
        name: the format's name, reported in ``Prompt.format`` and in errors
            (``"llama-3"``, ``"model-template"``, ...).
        bos_token: text of the beginning-of-sequence token the template may print
            (``"<s>"``, ``"<|begin_of_text|>"``); empty when the tokenizer adds it itself.
        eos_token: text of the end-of-sequence token (``"</s>"``); empty if unknown.
        stop: strings that end a reply, besides ``eos_token`` (end-of-turn markers, the start
            of the next user turn).

    Raises:
        FormatError: the template does not compile (the message names the problem and line).
    """

    def __init__(
        self,
        template: str,
        *,
        name: str,
        bos_token: str = "",
        eos_token: str = "",
        stop: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.source = template
        self.stop = tuple(dict.fromkeys((*stop, eos_token) if eos_token else stop))
        try:
            self._template = _environment().from_string(template)
        except jinja2.TemplateSyntaxError as e:
            raise FormatError(
                f"chat template {name!r} does not compile: {e.message} (line {e.lineno})"
            ) from None

    def __repr__(self) -> str:
        return f"JinjaChatFormat(name={self.name!r})"

    @functools.cached_property
    def supports_tools(self) -> bool:
        """Whether the template shows tools (a ``tools`` variable): found once, by rendering a
        user message with a tool and without it and comparing the two."""
        probe = [Message("user", "Hello")]
        try:
            return self.render(probe, tools=[_PROBE_TOOL]).text != self.render(probe).text
        except FormatError:
            return False

    def render(self, messages: Sequence[Message], speakers: Speakers = _NO_SPEAKERS,
               tools: Sequence[dict[str, Any]] = ()) -> Prompt:
        """Render ``messages`` so that the text ends where the assistant's reply starts.

        Args:
            messages: the chat so far, oldest first; an assistant message's ``tool_calls``
                go to the template as ``{"id", "type", "function": {"name", "arguments"}}``
                with ``arguments`` as a mapping (what Hugging Face templates expect), a
                ``tool`` message with its ``tool_call_id``.
            speakers: ignored; a Jinja template names the roles itself.
            tools: OpenAI-shaped tools for the ``tools`` variable (templates that support
                tools list them; see ``supports_tools``).

        Returns:
            The prompt text, the stop strings (``stop`` then ``eos_token``) and this format's name.

        Raises:
            FormatError: the template rejected the messages (``raise_exception``, e.g. roles that
                do not alternate) or failed while rendering them.
        """
        del speakers
        variables: dict[str, Any] = {
            "messages": [_as_template_message(m) for m in messages],
            "add_generation_prompt": True,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        }
        if tools:
            variables["tools"] = list(tools)
        try:
            text = self._template.render(variables)
        except FormatError as e:
            raise FormatError(f"chat template {self.name!r} refused the messages: {e}") from None
        except _RENDER_ERRORS as e:
            raise FormatError(
                f"chat template {self.name!r} failed to render: {type(e).__name__}: {e}"
            ) from e
        return Prompt(text=text, stop=self.stop, format=self.name)
