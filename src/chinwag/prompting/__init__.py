"""Chat formats: messages in, prompt text and stop strings out.

Three kinds of format implement ``ChatFormat``:

- ``JinjaChatFormat``: a Hugging Face / GGUF ``chat_template``, the model's own;
- named formats (``named_format("llama-3")``), Jinja templates kept as data in ``formats.py``;
- ``TranscriptFormat``: ``Name: text`` lines, for base models that have no template.

``resolve_chat_format`` picks one for a model, in a fixed order of priority.
"""

from __future__ import annotations

from chinwag.prompting.base import ChatFormat, Prompt, Speakers
from chinwag.prompting.formats import format_names, named_format
from chinwag.prompting.template import JinjaChatFormat
from chinwag.prompting.transcript import TranscriptFormat

__all__ = [
    "ChatFormat",
    "JinjaChatFormat",
    "Prompt",
    "Speakers",
    "TranscriptFormat",
    "format_names",
    "named_format",
    "resolve_chat_format",
]

MODEL_TEMPLATE_NAME = "model-template"
"""The name a model's own template gets in ``Prompt.format``."""


def _by_name(name: str) -> ChatFormat:
    return TranscriptFormat() if name == TranscriptFormat.name else named_format(name)


def resolve_chat_format(
    *,
    model_template: str | None,
    bos_token: str = "",
    eos_token: str = "",
    requested: str | None = None,
    persona_format: str | None = None,
) -> ChatFormat:
    """Choose the chat format for a model.

    Priority, highest first:

    1. ``requested``: an explicit choice of the user (``--chat-format``, a setting); a named
       format or ``"transcript"``.
    2. ``model_template``: the model's own ``chat_template`` (from GGUF metadata or
       ``tokenizer_config.json``), named ``"model-template"``; empty counts as absent.
    3. ``persona_format``: the format a persona asks for; a named format or ``"transcript"``.
    4. ``TranscriptFormat()``: for base models, which have no template.

    Args:
        model_template: Jinja2 source of the model's template, or None.
        bos_token: text of the model's beginning-of-sequence token, for its template.
        eos_token: text of the model's end-of-sequence token; also a stop string.
        requested: name of the format the user asked for, or None.
        persona_format: name of the format the persona asks for, or None.

    Raises:
        ConfigError: ``requested`` or ``persona_format`` names no known format.
        FormatError: the model's template does not compile.
    """
    if requested:
        return _by_name(requested)
    if model_template and model_template.strip():
        return JinjaChatFormat(model_template, name=MODEL_TEMPLATE_NAME, bos_token=bos_token,
                               eos_token=eos_token)
    if persona_format:
        return _by_name(persona_format)
    return TranscriptFormat()
