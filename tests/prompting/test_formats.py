"""Named chat formats against golden files made by each family's official template.

Every golden file in ``golden/`` renders ``CONVERSATION`` (system, user, assistant, user). For the
families that publish a Jinja ``chat_template``, the official template is kept in ``official/``
and a test renders it with the same ``JinjaChatFormat`` machinery: the golden file is what the
official template prints, and our named format must print the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chinwag.errors import ConfigError, FormatError
from chinwag.prompting import (
    JinjaChatFormat,
    TranscriptFormat,
    format_names,
    named_format,
    resolve_chat_format,
)
from chinwag.prompting.formats import FORMATS
from chinwag.types import Message

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
OFFICIAL = HERE / "official"

CONVERSATION = [Message(m["role"], m["content"]) for m in
                json.loads((Path(__file__).parent / "golden" / "conversation.json").read_text())]

# Where each official template in official/ comes from (the "chat_template" of the
# tokenizer_config.json named, JSON-decoded):
OFFICIAL_SOURCES = {
    # meta-llama/Meta-Llama-3-8B-Instruct; also LLAMA3_INSTRUCT_CHAT_TEMPLATE in
    # llama-cpp-python's llama_cpp/llama_chat_format.py.
    "llama-3": "meta-llama/Meta-Llama-3-8B-Instruct",
    # teknium/OpenHermes-2.5-Mistral-7B (the ChatML template llama.cpp's
    # tests/test-chat-template.cpp and llama-cpp-python's CHATML_CHAT_TEMPLATE use).
    "chatml": "teknium/OpenHermes-2.5-Mistral-7B",
    # google/gemma-3-1b-it (as embedded in ggml-org/gemma-3-1b-it-GGUF); the same template
    # ships with the other Gemma 3 instruction-tuned sizes.
    "gemma": "google/gemma-3-1b-it",
    # mistralai/Mistral-7B-Instruct-v0.2 (mistralai's "v1" template with a system prompt, also in
    # Mistral-7B-Instruct-v0.1 and Mixtral-8x7B-Instruct-v0.1; llama.cpp
    # tests/test-chat-template.cpp carries it with its expected output).
    "mistral-instruct": "mistralai/Mistral-7B-Instruct-v0.2",
    # meta-llama/Llama-2-7b-chat-hf (the 13b chat model has the same template; mistral.rs's
    # chat template tests carry it with the output transformers produces).
    "llama-2": "meta-llama/Llama-2-7b-chat-hf",
}
# No official Jinja template exists for these; their golden files are written by hand from:
# - vicuna: lm-sys/FastChat fastchat/conversation.py, template "vicuna_v1.1"
#   (SeparatorStyle.ADD_COLON_TWO, sep " ", sep2 "</s>"); see test_vicuna_golden_is_fastchats.
# - alpaca: tatsu-lab/stanford_alpaca README.md ("prompt_no_input" layout), earlier turns repeated
#   in the same layout (as text-generation-webui's Alpaca instruction template does).
HAND_WRITTEN = ("vicuna", "alpaca")

# Other chats on which a named format must print what its official template prints.
OTHER_CHATS = {
    "no-system": [Message("user", "Hi"), Message("assistant", "Hello."), Message("user", "Bye")],
    "one-turn": [Message("system", "Be brief."), Message("user", "Hi")],
    "only-user": [Message("user", "Hi")],
    "padded": [
        Message("system", "  Be brief.  "),
        Message("user", "  Hi  "),
        Message("assistant", "\n Hello. \n"),
        Message("user", " Bye\n"),
    ],
}


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.txt").read_bytes().decode("utf-8")


def official(name: str) -> JinjaChatFormat:
    spec = FORMATS[name]
    return JinjaChatFormat((OFFICIAL / f"{name}.jinja").read_text(encoding="utf-8"),
                           name=f"official-{name}", bos_token=spec.bos_token,
                           eos_token=spec.eos_token)


def test_the_required_formats_exist() -> None:
    required = {"llama-3", "chatml", "gemma", "mistral-instruct", "llama-2", "alpaca", "vicuna"}
    assert required <= set(format_names())
    assert format_names() == sorted(format_names())


def test_every_named_format_has_a_golden_file_and_a_source() -> None:
    for name in format_names():
        assert (GOLDEN / f"{name}.txt").is_file(), name
        assert name in OFFICIAL_SOURCES or name in HAND_WRITTEN, name
    for name in OFFICIAL_SOURCES:
        assert (OFFICIAL / f"{name}.jinja").is_file(), name


@pytest.mark.parametrize("name", sorted(OFFICIAL_SOURCES))
def test_official_template_renders_the_golden_file(name: str) -> None:
    assert official(name).render(CONVERSATION).text == golden(name)


@pytest.mark.parametrize("name", format_names())
def test_named_format_renders_the_golden_file(name: str) -> None:
    prompt = named_format(name).render(CONVERSATION)
    assert prompt.text == golden(name)
    assert prompt.format == name


@pytest.mark.parametrize("chat", sorted(OTHER_CHATS))
@pytest.mark.parametrize("name", sorted(OFFICIAL_SOURCES))
def test_named_format_matches_official_template_on_other_chats(name: str, chat: str) -> None:
    messages = OTHER_CHATS[chat]
    assert named_format(name).render(messages).text == official(name).render(messages).text


def test_vicuna_golden_is_fastchats() -> None:
    # Conversation.get_prompt of lm-sys/FastChat, SeparatorStyle.ADD_COLON_TWO, transcribed.
    seps = [" ", "</s>"]
    roles = {"user": "USER", "assistant": "ASSISTANT"}
    turns: list[tuple[str, str | None]] = [(roles[m.role], m.content) for m in CONVERSATION[1:]]
    turns.append(("ASSISTANT", None))
    expected = CONVERSATION[0].content + seps[0]
    for i, (role, text) in enumerate(turns):
        expected += f"{role}: {text}{seps[i % 2]}" if text else f"{role}:"
    assert golden("vicuna") == expected


def test_vicuna_uses_its_default_system_sentence_when_none_is_given() -> None:
    text = named_format("vicuna").render([Message("user", "Hi")]).text
    assert text == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions. USER: Hi ASSISTANT:"
    )


def test_alpaca_single_turn_is_stanfords_prompt() -> None:
    # tatsu-lab/stanford_alpaca train.py PROMPT_DICT["prompt_no_input"], plus the line break
    # after "### Response:" that the README shows.
    text = named_format("alpaca").render([Message("user", "Name three birds.")]).text
    assert text == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName three birds.\n\n### Response:\n"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llama-3", ("<|eot_id|>", "<|start_header_id|>user<|end_header_id|>")),
        ("chatml", ("<|im_end|>", "<|im_start|>user")),
        ("gemma", ("<end_of_turn>", "<start_of_turn>user", "<eos>")),
        ("mistral-instruct", ("</s>", "[INST]")),
        ("llama-2", ("</s>", "[INST]")),
        ("alpaca", ("### Instruction:", "</s>")),
        ("vicuna", ("</s>", "USER:")),
    ],
)
def test_named_format_stops_at_end_of_turn_and_next_user_turn(
    name: str, expected: tuple[str, ...]
) -> None:
    stop = named_format(name).render(CONVERSATION).stop
    assert set(expected) <= set(stop)
    assert len(stop) == len(set(stop))


@pytest.mark.parametrize("name", ["gemma", "mistral-instruct", "llama-2"])
def test_roles_out_of_order_are_a_format_error(name: str) -> None:
    messages = [Message("user", "Hi"), Message("user", "Anyone there?")]
    with pytest.raises(FormatError, match="alternate"):
        named_format(name).render(messages)
    with pytest.raises(FormatError, match="alternate"):
        official(name).render(messages)


def test_unknown_named_format_is_a_config_error_listing_the_known_names() -> None:
    with pytest.raises(ConfigError) as caught:
        named_format("llama-9")
    message = str(caught.value)
    assert "'llama-9'" in message
    for name in format_names():
        assert name in message


# resolve_chat_format: requested > the model's own template > the persona's format > transcript.

MODEL_TEMPLATE = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}[assistant]"


def test_requested_format_wins_over_everything() -> None:
    chosen = resolve_chat_format(model_template=MODEL_TEMPLATE, requested="chatml",
                                 persona_format="gemma")
    assert isinstance(chosen, JinjaChatFormat)
    assert chosen.name == "chatml"


def test_requested_transcript_gives_the_transcript_format() -> None:
    chosen = resolve_chat_format(model_template=MODEL_TEMPLATE, requested="transcript")
    assert isinstance(chosen, TranscriptFormat)


def test_unknown_requested_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="known formats"):
        resolve_chat_format(model_template=None, requested="no-such-format")


def test_model_template_wins_over_the_persona_format() -> None:
    chosen = resolve_chat_format(model_template=MODEL_TEMPLATE, eos_token="</s>",
                                 persona_format="gemma")
    prompt = chosen.render([Message("user", "Hi")])
    assert chosen.name == "model-template"
    assert prompt.format == "model-template"
    assert prompt.text == "[user]Hi[assistant]"
    assert prompt.stop == ("</s>",)


def test_model_template_gets_the_models_tokens() -> None:
    chosen = resolve_chat_format(model_template="{{ bos_token }}{{ eos_token }}",
                                 bos_token="<B>", eos_token="<E>")
    assert chosen.render([]).text == "<B><E>"


def test_persona_format_is_used_when_the_model_has_no_template() -> None:
    for template in (None, "", "  \n"):
        chosen = resolve_chat_format(model_template=template, persona_format="gemma")
        assert chosen.name == "gemma"
    chosen = resolve_chat_format(model_template=None, persona_format="transcript")
    assert isinstance(chosen, TranscriptFormat)


def test_transcript_is_the_default_for_base_models() -> None:
    assert isinstance(resolve_chat_format(model_template=None), TranscriptFormat)
