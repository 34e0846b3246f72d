"""A GGUF that carries its own chat template: the template wins over the transcript format.

The test makes such a model from the embedded one with gguf-py's ``gguf-new-metadata`` (it
copies the weights and adds ``tokenizer.chat_template``: Gemma 3's official instruct template).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chinwag.chat import Chatbot, get_persona
from chinwag.types import Message, SamplingParams, collect

pytestmark = pytest.mark.slow

TEMPLATE = Path(__file__).parent.parent / "prompting" / "official" / "gemma.jinja"


@pytest.fixture(scope="module")
def templated(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from chinwag.backends.llamacpp import LlamaCppBackend

    out = tmp_path_factory.mktemp("gguf") / "gemma-with-template.gguf"
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(model_path),
                    str(out), "--chat-template-file", str(TEMPLATE), "--force"],
                   check=True, capture_output=True, timeout=300)
    backend = LlamaCppBackend(out, n_ctx=1024, n_threads=2)
    yield backend
    backend.close()


def test_models_own_template_is_used(templated: Any) -> None:
    assert templated.chat_format.name == "model-template"
    assert templated.info().chat_format == "model-template"
    prompt = templated.render([Message("system", "Be brief."), Message("user", "Hi!")])
    assert prompt.text.startswith("<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n")
    assert prompt.text.endswith("<start_of_turn>model\n")


def test_template_wins_over_persona_format_but_not_over_explicit_choice(
        templated: Any, model_path: Path) -> None:
    assert templated.format_for("chatml").name == "model-template"
    from chinwag.backends.llamacpp import LlamaCppBackend

    forced = LlamaCppBackend(model_path, n_ctx=256, n_threads=2, chat_format="chatml")
    try:
        assert forced.chat_format.name == "chatml"
    finally:
        forced.close()


def test_bos_in_template_text_is_not_doubled(templated: Any) -> None:
    prompt = templated.render([Message("user", "Hi!")]).text
    tokens = templated.tokenize(prompt)
    assert tokens[0] == templated.model.bos_token_id
    assert tokens[1] != templated.model.bos_token_id


def test_reply_has_no_control_tokens_and_no_next_turn(templated: Any) -> None:
    bot = Chatbot(templated, get_persona("assistant"), temperature=0, max_tokens=60)
    reply = "".join(bot.send("What is the capital of France?"))
    for marker in ("<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "\nuser\n"):
        assert marker not in reply
    text, done = collect(templated.chat([Message("user", "Say hello.")],
                                        SamplingParams(temperature=0, max_tokens=60)))
    assert "<end_of_turn>" not in text and "<start_of_turn>" not in text
    assert text.strip() and done.usage.completion_tokens > 0
