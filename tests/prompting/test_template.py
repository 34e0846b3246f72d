"""JinjaChatFormat: renders a Hugging Face / GGUF chat_template the way transformers does."""

from __future__ import annotations

import datetime

import pytest

from chinwag.errors import FormatError
from chinwag.prompting import ChatFormat, JinjaChatFormat, Speakers
from chinwag.types import Message

HELLO = [Message("system", "Be kind."), Message("user", "Hello")]


def render(template: str, messages: list[Message] = HELLO, **kwargs: str) -> str:
    return JinjaChatFormat(template, name="test", **kwargs).render(messages).text


def test_is_a_chat_format() -> None:
    chat_format: ChatFormat = JinjaChatFormat("x", name="test")
    assert chat_format.name == "test"


def test_messages_are_role_and_content_dicts() -> None:
    template = "{% for m in messages %}{{ m['role'] }}={{ m.content }};{% endfor %}"
    assert render(template) == "system=Be kind.;user=Hello;"


def test_generation_prompt_is_asked_for_and_tokens_are_given() -> None:
    template = "{{ bos_token }}{% if add_generation_prompt %}go{% endif %}{{ eos_token }}"
    assert render(template, bos_token="<s>", eos_token="</s>") == "<s>go</s>"


def test_blocks_are_trimmed_as_in_transformers() -> None:
    template = (
        "{% for m in messages %}\n    {% if m.role == 'user' %}\n{{ m.content }}\n{% endif %}\n"
        "{% endfor %}"
    )
    assert render(template) == "Hello\n"


def test_loop_controls_are_enabled() -> None:
    template = (
        "{% for m in messages %}{% if m.role == 'user' %}{% break %}{% endif %}"
        "{{ m.content }}{% endfor %}"
    )
    assert render(template) == "Be kind."


def test_generation_block_renders_its_body() -> None:
    assert render("<{% generation %}{{ messages[1].content }}{% endgeneration %}>") == "<Hello>"


def test_tojson_does_not_escape_html_or_unicode() -> None:
    template = "{{ {'text': '<b>é</b>'} | tojson }}|{{ [1, 2] | tojson(indent=1) }}"
    assert render(template) == '{"text": "<b>é</b>"}|[\n 1,\n 2\n]'


def test_strftime_now_formats_the_current_time() -> None:
    assert render("{{ strftime_now('%Y') }}") == str(datetime.datetime.now().year)


def test_speakers_are_ignored() -> None:
    chat_format = JinjaChatFormat("{{ messages[1].content }}", name="test")
    assert chat_format.render(HELLO, Speakers("Bertha", "Traveller")).text == "Hello"


def test_prompt_names_the_format_and_stops_at_the_given_strings_then_eos() -> None:
    chat_format = JinjaChatFormat("x", name="mine", eos_token="</s>", stop=("[INST]", "</s>"))
    prompt = chat_format.render(HELLO)
    assert prompt.format == "mine"
    assert prompt.stop == ("[INST]", "</s>")
    assert JinjaChatFormat("x", name="a", stop=("END",), eos_token="<e>").stop == ("END", "<e>")
    assert JinjaChatFormat("x", name="a").render(HELLO).stop == ()


def test_template_that_does_not_compile_is_a_format_error_naming_the_problem() -> None:
    with pytest.raises(FormatError) as caught:
        JinjaChatFormat("hello\n{% for m in messages %}{{ m.content }}", name="broken")
    message = str(caught.value)
    assert "'broken'" in message
    assert "does not compile" in message
    assert "endfor" in message
    assert "line 2" in message


def test_raise_exception_in_a_template_is_a_format_error_with_its_message() -> None:
    template = (
        "{% if messages[0].role == 'system' %}{{ raise_exception('No system role!') }}{% endif %}"
    )
    with pytest.raises(FormatError, match="No system role!"):
        render(template)


def test_error_while_rendering_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="failed to render"):
        render("{{ messages[0].content + 1 }}")
    with pytest.raises(FormatError, match="failed to render"):
        render("{{ messages[0]['role']['x']['y'] }}")


def test_template_cannot_change_the_messages() -> None:
    with pytest.raises(FormatError, match="failed to render"):
        render("{{ messages.append({'role': 'user', 'content': 'injected'}) }}")


def test_template_cannot_reach_python_internals() -> None:
    with pytest.raises(FormatError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}")
