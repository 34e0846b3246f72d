"""llama.cpp's C sampler chain for one sequence, built from ``SamplingParams``.

The order follows llama.cpp's common sampler (``common/sampling.cpp``): grammar first (so only
tokens the grammar allows survive), then the repetition penalty, top-k, top-p, min-p,
temperature, and a seeded draw. Temperature 0 replaces the last three with greedy choice.

The repetition penalty is ours (``RepeatPenalty``), not llama.cpp's penalties sampler: that one
looks every candidate of the 262,144-token vocabulary up in a hash map, for every sequence at
every step (its header says to avoid it on the full vocabulary), which cost chinwag a fifth of
its speed. Ours edits, in the logits row itself, only the tokens of the penalty window, with
llama.cpp's arithmetic, before the chain copies the row; its cost grows with the window, not
the vocabulary. Penalising a token commutes with the grammar (a token the grammar forbids stays
at minus infinity), so the result is the chain llama.cpp would run.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import jsonschema
import llama_cpp
import numpy as np
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


class RepeatPenalty:
    """llama.cpp's penalties sampler (``llama_sampler_init_penalties``), applied to a logits row
    in place, at a cost that grows with the window instead of the vocabulary.

    For each distinct token among the last ``last_n`` accepted ones (``count`` times): a logit
    <= 0 is multiplied by ``repeat``, a positive one divided by it, then ``count * frequency +
    presence`` is subtracted; in float32, as llama.cpp computes it (``llama-sampler.cpp``,
    ``llama_sampler_penalties_apply``).

    Args:
        last_n: how many recent tokens count (> 0).
        repeat: the multiplicative penalty (1.0: none).
        frequency: subtracted once per occurrence (OpenAI's ``frequency_penalty``).
        presence: subtracted once per token present (OpenAI's ``presence_penalty``).
        history: tokens already in the window, oldest first (llama-server accepts the whole
            prompt into its sampler, so a prompt's last tokens count too).
    """

    def __init__(self, last_n: int, repeat: float, frequency: float = 0.0,
                 presence: float = 0.0, history: Sequence[int] = ()) -> None:
        self.repeat = np.float32(repeat)
        self.frequency = np.float32(frequency)
        self.presence = np.float32(presence)
        self._window: deque[int] = deque(maxlen=last_n)
        self._counts: Counter[int] = Counter()
        for token in history[-last_n:]:
            self.accept(token)

    def accept(self, token: int) -> None:
        """Add a token to the window (the oldest leaves when it is full)."""
        if len(self._window) == self._window.maxlen:
            old = self._window[0]
            self._counts[old] -= 1
            if not self._counts[old]:
                del self._counts[old]
        self._window.append(token)
        self._counts[token] += 1

    def apply(self, logits: np.ndarray) -> None:
        """Penalise the window's tokens in ``logits`` (float32, one row, edited in place)."""
        if not self._counts:
            return
        ids = np.fromiter(self._counts.keys(), dtype=np.intp, count=len(self._counts))
        values = logits[ids]
        values = np.where(values <= 0, values * self.repeat, values / self.repeat)
        if self.frequency or self.presence:
            counts = np.fromiter(self._counts.values(), dtype=np.float32, count=len(ids))
            values -= counts * self.frequency + self.presence
        logits[ids] = values


class Sampler:
    """An owned ``llama_sampler`` chain; ``sample`` picks and accepts the next token.

    Args:
        vocab: the model's ``llama_vocab *``.
        n_vocab: vocabulary size (the length of a logits row).
        params: the sampling settings.
        grammar: a GBNF grammar (root rule ``root``) to constrain output, or None.
        history: tokens before the first one sampled (the prompt): the repetition penalty's
            window starts with their last ``repeat_last_n``, as in llama-server.

    Raises:
        SchemaError: llama.cpp rejected the grammar.
    """

    def __init__(self, vocab: Any, n_vocab: int, params: SamplingParams,
                 grammar: str | None = None, history: Sequence[int] = ()) -> None:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._chain = chain
        self.n_vocab = n_vocab
        self.penalty: RepeatPenalty | None = None
        if params.repeat_penalty != 1.0 and params.repeat_last_n != 0:
            self.penalty = RepeatPenalty(params.repeat_last_n, params.repeat_penalty,
                                         history=history)
        if grammar is not None:
            g = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not g:
                self.close()
                raise SchemaError("llama.cpp could not parse the grammar made from the schema")
            llama_cpp.llama_sampler_chain_add(chain, g)
        add = llama_cpp.llama_sampler_chain_add
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
        """Pick a token from the logits at batch position ``index`` and accept it (the
        repetition penalty edits that logits row first)."""
        if self.penalty is not None:
            row = llama_cpp.llama_get_logits_ith(ctx, index)
            self.penalty.apply(np.ctypeslib.as_array(row, shape=(self.n_vocab,)))
        token = int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))
        if self.penalty is not None:
            self.penalty.accept(token)
        return token

    def close(self) -> None:
        """Free the chain and every sampler in it. Idempotent."""
        if self._chain:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
