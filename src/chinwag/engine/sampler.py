"""llama.cpp's C sampler chain for one sequence, built from ``SamplingParams``.

The order follows llama.cpp's common sampler (``common/sampling.cpp``): grammar first (so only
tokens the grammar allows survive), then the repetition penalty, top-k, top-p, min-p,
temperature, and a seeded draw. Temperature 0 replaces the last three with greedy choice.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import llama_cpp
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from chinwag.errors import SchemaError
from chinwag.types import SamplingParams

# llama.cpp's JSON grammars allow unbounded whitespace between tokens; a small base model can
# loop on newlines forever inside them. We cap whitespace as llama.cpp's own json.gbnf does.
_WS_CAPPED = 'ws ::= | " " | "\\n" [ \\t]{0,20}'


def grammar_for_schema(schema: dict[str, Any]) -> str:
    """A GBNF grammar accepting exactly the JSON documents valid against ``schema``.

    An empty schema (``{}``) means any JSON object, as OpenAI's ``json_object`` mode.

    Raises:
        SchemaError: the schema is not a valid JSON Schema, or uses what llama.cpp's converter
            (llama_cpp.llama_grammar.json_schema_to_gbnf) cannot express.
    """
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise SchemaError(f"not a valid JSON Schema: {e.message}") from None
    if not schema:
        return _cap_whitespace(JSON_GBNF)
    try:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
    except Exception as e:  # the converter raises bare Exception/ValueError/KeyError
        raise SchemaError(f"this JSON Schema cannot be enforced: {type(e).__name__}: {e}") \
            from None
    return _cap_whitespace(gbnf)


# llama-cpp-python's converter lets a string character be anything but a quote or a backslash,
# raw newlines and control characters included, which JSON forbids (RFC 8259 section 7); the
# model then writes strings that json.loads rejects. llama.cpp's own converter excludes them.
_LOOSE_CHARS = r'[^"\\]'
_STRICT_CHARS = r'[^"\\\x7F\x00-\x1F]'


def _cap_whitespace(gbnf: str) -> str:
    """Make the converter's grammar stricter: JSON-legal string characters, bounded
    whitespace."""
    gbnf = "\n".join(line.replace(_LOOSE_CHARS, _STRICT_CHARS, 1)
                     if line.startswith("char ::=") else line for line in gbnf.splitlines())
    lines = [line for line in gbnf.splitlines() if not line.replace(" ", "").startswith("ws::=")]
    if len(lines) == len(gbnf.splitlines()):
        return gbnf
    return "\n".join([*lines, _WS_CAPPED])


class Sampler:
    """An owned ``llama_sampler`` chain; ``sample`` picks and accepts the next token.

    Args:
        vocab: the model's ``llama_vocab *``.
        n_vocab: vocabulary size (the penalties sampler needs it).
        params: the sampling settings.
        grammar: a GBNF grammar (root rule ``root``) to constrain output, or None.

    Raises:
        SchemaError: llama.cpp rejected the grammar.
    """

    def __init__(self, vocab: Any, n_vocab: int, params: SamplingParams,
                 grammar: str | None = None) -> None:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._chain = chain
        if grammar is not None:
            g = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not g:
                self.close()
                raise SchemaError("llama.cpp could not parse the grammar made from the schema")
            llama_cpp.llama_sampler_chain_add(chain, g)
        add = llama_cpp.llama_sampler_chain_add
        if params.repeat_penalty != 1.0 and params.repeat_last_n != 0:
            add(chain, llama_cpp.llama_sampler_init_penalties(
                n_vocab, params.repeat_last_n, params.repeat_penalty, 0.0, 0.0))
        if params.temperature <= 0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
        add(chain, llama_cpp.llama_sampler_init_dist(seed))

    def sample(self, ctx: Any, index: int) -> int:
        """Pick a token from the logits at batch position ``index`` and accept it."""
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def close(self) -> None:
        """Free the chain and every sampler in it. Idempotent."""
        if self._chain:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
