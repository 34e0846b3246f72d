"""Named chat formats, as data: one Jinja2 template (and its tokens and stop strings) per family.

Each template below was written for chinwag and reproduces, byte for byte, what the family's
official template renders for a well-formed chat (an optional system message, then user and
assistant turns in alternation, ending with a user turn). ``tests/prompting`` keeps the official
templates and pins both against the same golden files. Where each format comes from:

``llama-3``
    ``chat_template`` of meta-llama/Meta-Llama-3-8B-Instruct: every message is
    ``<|start_header_id|>ROLE<|end_header_id|>\\n\\nTEXT<|eot_id|>`` with TEXT trimmed,
    ``<|begin_of_text|>`` first.
``chatml``
    OpenAI's ChatML as Hugging Face models write it (teknium/OpenHermes-2.5-Mistral-7B, Qwen):
    ``<|im_start|>ROLE\\nTEXT<|im_end|>\\n``, nothing trimmed.
``gemma``
    ``chat_template`` of google/gemma-3-*-it: roles ``user`` and ``model``, the system prompt and a
    blank line put in front of the first user turn, turn texts trimmed.
``mistral-instruct``
    Mistral's "v1" template (mistralai/Mistral-7B-Instruct-v0.1 and v0.2,
    Mixtral-8x7B-Instruct-v0.1): ``<s> [INST] SYSTEM\\n\\nUSER [/INST] REPLY</s> [INST] ...``,
    the system prompt in the first user turn.
``llama-2``
    ``chat_template`` of meta-llama/Llama-2-7b-chat-hf:
    ``<s>[INST] <<SYS>>\\nSYSTEM\\n<</SYS>>\\n\\nUSER [/INST] REPLY </s><s>[INST] ...``.
``alpaca``
    The prompt of Stanford Alpaca (tatsu-lab/stanford_alpaca, README and ``train.py``):
    a preamble, then ``### Instruction:\\nUSER\\n\\n### Response:\\n``. Alpaca was trained on
    single turns; earlier turns are written the same way, one after another.
``vicuna``
    FastChat's ``vicuna_v1.1`` conversation template (lm-sys/FastChat ``conversation.py``):
    ``SYSTEM USER: TEXT ASSISTANT: REPLY</s>USER: ...``, with Vicuna's default system sentence
    when the chat has none. Vicuna's Hugging Face repositories have no ``chat_template``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from chinwag.errors import ConfigError
from chinwag.prompting.template import JinjaChatFormat


@dataclass(frozen=True)
class NamedFormat:
    """A chat format known by name.

    Attributes:
        template: Jinja2 source, rendered by ``JinjaChatFormat``.
        stop: strings that end a reply besides ``eos_token`` (end of turn, next user turn).
        bos_token: text of the beginning-of-sequence token that the template prints.
        eos_token: text of the end-of-sequence token; also a stop string.
    """

    template: str
    stop: tuple[str, ...]
    bos_token: str
    eos_token: str


# Shared opening: split an optional leading system message from the turns that follow.
_SPLIT_SYSTEM = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = none %}{% set turns = messages %}{% endif %}"
)
# Shared check: after the system message, user and assistant turns alternate, user first.
_ALTERNATE = (
    "{% if message['role'] not in ('user', 'assistant') "
    "or (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('after an optional system message, turns must alternate "
    "user/assistant/user/..., starting with user') }}{% endif %}"
)


def _default_system(text: str) -> str:
    """Jinja that sets ``system`` to ``text`` when the chat has no system message."""
    return "{% if system is none %}{% set system = " + json.dumps(text) + " %}{% endif %}"


_LLAMA_3 = (
    "{% for message in messages %}"
    "{% if loop.first %}{{ bos_token }}{% endif %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

_CHATML = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_GEMMA = (
    "{{ bos_token }}" + _SPLIT_SYSTEM + "{% for message in turns %}" + _ALTERNATE
    + "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else 'user' }}\n"
    "{% if loop.first and system is not none %}{{ system }}\n\n{% endif %}"
    "{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

_MISTRAL_INSTRUCT = (
    "{{ bos_token }}" + _SPLIT_SYSTEM + "{% for message in turns %}" + _ALTERNATE
    + "{% if message['role'] == 'user' %}"
    " [INST] {% if loop.first and system is not none %}{{ system }}\n\n{% endif %}"
    "{{ message['content'] }} [/INST]"
    "{% else %} {{ message['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)

_LLAMA_2 = (
    _SPLIT_SYSTEM + "{% for message in turns %}" + _ALTERNATE
    + "{% set text = message['content'] %}"
    "{% if loop.first and system is not none %}"
    "{% set text = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + text %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token }}[INST] {{ text | trim }} [/INST]"
    "{% else %} {{ text | trim }} {{ eos_token }}{% endif %}"
    "{% endfor %}"
)

_ALPACA_SYSTEM = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
_ALPACA = (
    _SPLIT_SYSTEM + _default_system(_ALPACA_SYSTEM)
    + "{{ system }}\n\n"
    "{% for message in turns %}"
    "{% if message['role'] == 'user' %}### Instruction:\n{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'assistant' %}### Response:\n{{ message['content'] }}\n\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)

_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_VICUNA = (
    _SPLIT_SYSTEM + _default_system(_VICUNA_SYSTEM)
    + "{{ system }} "
    "{% for message in turns %}"
    "{% if message['role'] == 'user' %}USER: {{ message['content'] }} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: {{ message['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

FORMATS: dict[str, NamedFormat] = {
    "llama-3": NamedFormat(
        _LLAMA_3,
        stop=("<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>user<|end_header_id|>"),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
    ),
    "chatml": NamedFormat(
        _CHATML, stop=("<|im_end|>", "<|im_start|>user"), bos_token="", eos_token="<|im_end|>"
    ),
    "gemma": NamedFormat(
        _GEMMA, stop=("<end_of_turn>", "<start_of_turn>user"), bos_token="<bos>",
        eos_token="<eos>",
    ),
    "mistral-instruct": NamedFormat(
        _MISTRAL_INSTRUCT, stop=("</s>", "[INST]"), bos_token="<s>", eos_token="</s>"
    ),
    "llama-2": NamedFormat(_LLAMA_2, stop=("</s>", "[INST]"), bos_token="<s>", eos_token="</s>"),
    "alpaca": NamedFormat(_ALPACA, stop=("### Instruction:",), bos_token="", eos_token="</s>"),
    "vicuna": NamedFormat(_VICUNA, stop=("</s>", "USER:"), bos_token="", eos_token="</s>"),
}
"""Every named format, by name."""


def format_names() -> list[str]:
    """The names of every named format, sorted."""
    return sorted(FORMATS)


def named_format(name: str) -> JinjaChatFormat:
    """The named chat format ``name``, ready to render.

    Raises:
        ConfigError: no format has that name (the message lists the known names).
    """
    try:
        spec = FORMATS[name]
    except KeyError:
        raise ConfigError(
            f"unknown chat format {name!r}; known formats: {', '.join(format_names())}"
        ) from None
    return JinjaChatFormat(spec.template, name=name, bos_token=spec.bos_token,
                           eos_token=spec.eos_token, stop=spec.stop)
