"""How well a model decides under ``tool_choice: "auto"``: 20 fixed requests, 10 that need one
of three tools and 10 that need a plain reply, each decided by chinwag's real path
(``build_turn`` with the tools, then ``constrained_tool_stream``'s ``ToolDecision``: the option
``choose`` finds most likely). Prints each decision, the share right (a tool asked for and the
right tool; a reply), and writes ``bench/results/tool_decision.json``.

There is no llama.cpp figure to compare with: llama-server has no ``auto`` decision of its
own (the model's template writes a call or not). This is a measurement for the README, not a
target.

usage: .venv/bin/python bench/tool_decision.py [--llm smollm2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from chinwag import load_backend, load_settings
from chinwag.backends.config import open_llm
from chinwag.backends.tool_calls import constrained_tool_stream
from chinwag.chat.turn import build_turn
from chinwag.tools import Tool, ToolRequest
from chinwag.types import Message, SamplingParams, ToolDecision

TOOLS = (
    Tool("get_weather", "Get the weather forecast for a city",
         {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    Tool("convert_currency", "Convert an amount of money from one currency to another",
         {"type": "object", "properties": {"amount": {"type": "number"},
                                           "to": {"type": "string"}},
          "required": ["amount", "to"]}),
    Tool("search_web", "Search the web for recent news and facts",
         {"type": "object", "properties": {"query": {"type": "string"}},
          "required": ["query"]}),
)
CASES: list[tuple[str, str]] = [
    ("What will the weather be in Paris tomorrow?", "get_weather"),
    ("Is it going to rain in London this weekend?", "get_weather"),
    ("How hot will it be in Cairo on Friday?", "get_weather"),
    ("Do I need an umbrella in Tokyo today?", "get_weather"),
    ("How much is 100 US dollars in euros?", "convert_currency"),
    ("Convert 250 pounds to Japanese yen.", "convert_currency"),
    ("What is 50 euros in Swiss francs?", "convert_currency"),
    ("Who won the football match last night?", "search_web"),
    ("What are today's top news headlines?", "search_web"),
    ("Find the latest results of the election.", "search_web"),
    ("Hello! How are you?", "reply"),
    ("Thank you, that was helpful.", "reply"),
    ("Tell me a short joke.", "reply"),
    ("Write a haiku about autumn leaves.", "reply"),
    ("What is your name?", "reply"),
    ("Can you explain what a noun is?", "reply"),
    ("Say goodbye in French.", "reply"),
    ("What is two plus two?", "reply"),
    ("Give me a synonym for happy.", "reply"),
    ("Good night!", "reply"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default=None, help="an LLM name (default: the embedded model)")
    args = parser.parse_args()
    settings = load_settings()
    backend = open_llm(args.llm, settings) if args.llm else load_backend(settings)
    request = ToolRequest(TOOLS, "auto")
    rows = []
    started = time.perf_counter()
    for text, wanted in CASES:
        turn = build_turn(backend, None, [Message("user", text)],
                          SamplingParams(temperature=0, max_tokens=1), reserve=1,
                          tools=request)
        stream = constrained_tool_stream(backend, turn.prompt, turn.params, request)
        decision = next(stream)
        stream.close()
        assert isinstance(decision, ToolDecision)
        rows.append({"text": text, "wanted": wanted, "choice": decision.choice,
                     "right": decision.choice == wanted, "scores": decision.scores})
        print(f"{'ok ' if decision.choice == wanted else 'BAD'} {wanted:>16} -> "
              f"{decision.choice:<16} {text}")
    seconds = time.perf_counter() - started
    tool_rows = [r for r in rows if r["wanted"] != "reply"]
    reply_rows = [r for r in rows if r["wanted"] == "reply"]
    result = {
        "model": backend.info().name,
        "right": sum(r["right"] for r in rows), "of": len(rows),
        "tools_right": sum(r["right"] for r in tool_rows), "tools_of": len(tool_rows),
        "called_a_tool_when_one_was_wanted": sum(r["choice"] != "reply" for r in tool_rows),
        "replies_right": sum(r["right"] for r in reply_rows), "replies_of": len(reply_rows),
        "seconds_per_decision": round(seconds / len(rows), 3), "rows": rows}
    print(f"{result['model']}: {result['right']}/{result['of']} right "
          f"(tool cases {result['tools_right']}/{result['tools_of']}, a tool at all "
          f"{result['called_a_tool_when_one_was_wanted']}/{result['tools_of']}; reply cases "
          f"{result['replies_right']}/{result['replies_of']}), "
          f"{result['seconds_per_decision']} s a decision")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import write_results
    print(write_results(f"tool_decision{'_' + args.llm if args.llm else ''}", result))


if __name__ == "__main__":
    main()
