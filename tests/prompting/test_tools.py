"""``prompting.tools``: a template that shows tools gets them and the tool messages as they
are; any other format gets a plain block in the (first) system message."""

from __future__ import annotations

from chinwag.prompting import resolve_chat_format
from chinwag.prompting.template import JinjaChatFormat
from chinwag.prompting.tools import ToolsFormat, with_tools
from chinwag.tools import Tool, ToolRequest
from chinwag.types import Message, ToolCall

# the shape of Qwen 2.5's and Llama 3.1's templates: tools listed in the system turn, calls as
# JSON with arguments as a mapping, results under their own role
TOOL_TEMPLATE = """{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}\
</tools>
{% endif %}{% for m in messages %}<{{ m.role }}>{{ m.content or '' }}\
{% for c in m.tool_calls or [] %}<call>{{ c.function.name }} {{ c.function.arguments | tojson }}\
</call>{% endfor %}{% if m.tool_call_id %}[{{ m.tool_call_id }}]{% endif %}
{% endfor %}<assistant>"""
PLAIN_TEMPLATE = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"
WEATHER = Tool("get_weather", "Weather", {"type": "object",
                                          "properties": {"city": {"type": "string"}}})
CHAT = [Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather",
                                                      '{"city": "Paris"}'),)),
        Message("tool", "18 C", tool_call_id="c1")]


def test_tool_support_is_found_by_rendering() -> None:
    assert JinjaChatFormat(TOOL_TEMPLATE, name="t").supports_tools
    assert not JinjaChatFormat(PLAIN_TEMPLATE, name="p").supports_tools


def test_a_template_with_tools_renders_them_and_the_tool_messages() -> None:
    fmt = JinjaChatFormat(TOOL_TEMPLATE, name="t")
    preamble, messages, used = with_tools(fmt, [], CHAT, ToolRequest((WEATHER,)))
    assert isinstance(used, ToolsFormat) and messages == CHAT and preamble == []
    text = used.render(messages).text
    assert text.startswith("<tools>get_weather;</tools>")
    assert '<call>get_weather {"city": "Paris"}</call>' in text  # arguments as a mapping
    assert "<tool>18 C[c1]" in text


def test_any_other_format_gets_a_block_in_the_first_system_message() -> None:
    fmt = resolve_chat_format(model_template=None, requested="chatml")
    system = Message("system", "You are terse.")
    preamble, messages, used = with_tools(fmt, [], [system, *CHAT], ToolRequest((WEATHER,)))
    assert used is fmt and preamble == []
    assert messages[0].role == "system" and messages[0].content.startswith("You are terse.")
    assert 'get_weather({"city": "Paris"}) returned: 18 C' in messages[0].content
    assert messages[1:] == [Message("user", "Weather in Paris?")]
    # with a persona's preamble, the block joins its system prompt
    preamble, messages, _ = with_tools(fmt, [system], CHAT, ToolRequest((WEATHER,)))
    assert len(preamble) == 1 and "get_weather" in preamble[0].content
    # no system message at all: one is made, first
    preamble, _, _ = with_tools(fmt, [], CHAT[:1], ToolRequest((WEATHER,)))
    assert preamble[0].role == "system" and "get_weather" in preamble[0].content


def test_an_upstream_server_gets_everything_as_it_is() -> None:
    fmt = resolve_chat_format(model_template=None, requested="chatml")
    preamble, messages, used = with_tools(fmt, [], CHAT, ToolRequest((WEATHER,)),
                                          upstream=True)
    assert (preamble, messages, used) == ([], CHAT, fmt)
