"""llama.cpp's C sampler chain for one sequence, built from ``SamplingParams``.

The order follows llama.cpp's common sampler (``common/sampling.cpp``): the logit bias, the
repetition penalty, top-k, top-p, min-p, temperature, and a seeded draw; temperature 0 replaces
the last four with greedy choice. A grammar checks the token drawn and, when it refuses it, the
token is drawn again from what the grammar allows (llama.cpp's rejection sampling, ``Sampler``).

The repetition penalty is ours (``RepeatPenalty``), not llama.cpp's penalties sampler: that one
looks every candidate of the 262,144-token vocabulary up in a hash map, for every sequence at
every step (its header says to avoid it on the full vocabulary), which cost chinwag a fifth of
its speed. Ours edits, in the logits row itself, only the tokens of the penalty window, with
llama.cpp's arithmetic, before the chain copies the row; its cost grows with the window, not
the vocabulary. Penalising a token commutes with the grammar (a token the grammar forbids stays
at minus infinity), so the result is the chain llama.cpp would run.

OpenAI's ``logit_bias`` is added to the biased tokens' logits in the row, before the penalty,
where llama.cpp's common sampler puts its logit-bias sampler (first in the chain); its cost
grows with the number of biased tokens. OpenAI's ``presence_penalty`` and
``frequency_penalty`` are the penalty's ``presence`` and ``frequency`` (llama.cpp's
``penalty_present`` and ``penalty_freq``, over the same ``repeat_last_n`` window).

Log-probabilities (``SamplingParams.logprobs``) are what llama-server reports by default
(``post_sampling_probs`` off: ``get_token_probabilities`` in ``tools/server``): the softmax of
the model's own logits row, before bias, penalties, grammar and temperature, so they say how
likely the model found each token, not how the sampler drew it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from chinwag.errors import BackendError, InvalidParams, SchemaError
from chinwag.json_schema import check_json_schema, for_grammar
from chinwag.types import SamplingParams

# llama.cpp's JSON grammars allow unbounded whitespace between tokens; a small base model can
# loop on newlines forever inside them. We cap whitespace as llama.cpp's own json.gbnf does.
_WS_CAPPED = 'ws ::= | " " | "\\n" [ \\t]{0,20}'


def grammar_for_schema(schema: dict[str, Any]) -> str:
    """A GBNF grammar accepting exactly the JSON documents valid against ``schema``.

    An empty schema (``{}``) means any JSON object, as OpenAI's ``json_object`` mode. The
    schema is first rewritten by ``json_schema.for_grammar`` (small integer ranges become
    enums); what the grammar still cannot enforce, ``for_grammar`` reports, and the text is
    checked after generation.

    Raises:
        SchemaError: the schema is not a valid JSON Schema, or uses what llama.cpp's converter
            (llama_cpp.llama_grammar.json_schema_to_gbnf) cannot express.
    """
    check_json_schema(schema)
    if not schema:
        return _cap_whitespace(JSON_GBNF)
    try:
        gbnf = json_schema_to_gbnf(json.dumps(for_grammar(schema)[0]))
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
    whitespace.

    Between a schema's tokens the converter allows one optional space (``space``), where
    llama.cpp's own converter also allows newlines and an indent: kept, as measured with
    ``bench/structured.py``'s schema (8 seeds, the embedded model): with one space, a
    document took 114 tokens and 3.2 s (median); with llama.cpp's rule, 178 tokens and
    4.5 s, the model indenting each line."""
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


class TopK:
    """The ``k`` largest logits of a row, largest first: what llama.cpp's top-k sampler keeps,
    found without copying the vocabulary into a candidate array and sorting it.

    A vectorised comparison keeps the tokens within ``gap`` of the largest logit, and only
    those are sorted; ``gap`` starts from the last row's spread (logits of one sequence change
    little from step to step) and widens until at least ``k`` tokens are in. On Gemma 3's
    262,144-token rows: about 0.15 ms, against about 0.5 ms for llama.cpp's candidate array and
    partial sort. Ties at the k-th place may be broken differently (lowest id first here;
    ``std::partial_sort`` leaves it unspecified).
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self._gap = np.float32(8.0)

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """Token ids of the ``k`` largest values of ``row``, largest first."""
        top = row.max()
        gap = self._gap
        while True:
            ids = np.flatnonzero(row >= top - gap)
            if len(ids) >= self.k or gap > 1e30:
                break
            gap = gap * np.float32(2.0)
        best = ids[np.argsort(-row[ids], kind="stable")[:self.k]]
        self._gap = np.float32((top - row[best[-1]]) * 1.25 + 0.5)
        return best


class LogitBias:
    """OpenAI's ``logit_bias`` (llama.cpp's ``llama_sampler_init_logit_bias``): a bias added
    to some tokens' logits, in the row, at a cost that grows with the number of tokens biased.

    Args:
        bias: token id -> value added to its logit (OpenAI: -100 to 100).
        n_vocab: vocabulary size.

    Raises:
        InvalidParams: a token id outside the vocabulary (``param="logit_bias"``;
            llama-server drops those silently, which hides a client's mistake).
    """

    def __init__(self, bias: Mapping[int, float], n_vocab: int) -> None:
        outside = sorted(t for t in bias if not 0 <= t < n_vocab)
        if outside:
            raise InvalidParams(f"logit_bias names token id(s) outside this model's vocabulary "
                                f"of {n_vocab} tokens: {outside[:5]}", param="logit_bias")
        self.ids = np.fromiter(bias.keys(), dtype=np.intp, count=len(bias))
        self.values = np.fromiter(bias.values(), dtype=np.float32, count=len(bias))

    def apply(self, logits: np.ndarray) -> None:
        """Add the biases to ``logits`` (float32, one row, edited in place)."""
        logits[self.ids] += self.values


LOGPROB_FLOOR = -9999.0
"""The lowest log-probability reported: OpenAI's value for a token that is very unlikely
(and JSON has no minus infinity)."""


@dataclass(frozen=True)
class SampledLogprob:
    """The model's log-probabilities at one sampled token (see the module docstring).

    Attributes:
        token: the token sampled.
        logprob: its natural-log probability under the model's raw distribution.
        top: the ``n`` most likely tokens as ``(token id, logprob)``, most likely first.
    """

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


class Logprobs:
    """Log-probabilities of a raw logits row: ``measure`` before the row is edited, ``of``
    once the token is known.

    A numerically stable log-softmax over the whole row, vectorised: the largest logit taken
    out, the exponentials in float32 summed in float64 (about 0.4 ms on Gemma 3's 262,144
    tokens, a quarter of the time of a float64 copy, within 1e-7 of it); the row is copied
    (float32) for the sampled token's logit, as bias and penalty then edit it; the top ``n``
    found by ``TopK``.

    Args:
        n: how many alternatives to report (0: only the sampled token's).
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._top_k = TopK(n) if n > 0 else None
        self._row: np.ndarray | None = None
        self._norm = 0.0
        self._top: tuple[tuple[int, float], ...] = ()

    def measure(self, row: np.ndarray) -> None:
        """Read ``row`` (float32, the model's logits) before anything edits it."""
        peak = row.max()
        self._norm = float(peak) + float(np.log(np.exp(row - peak).sum(dtype=np.float64)))
        self._row = row.copy()
        if self._top_k is not None:
            self._top = tuple((int(t), self._logprob(row[t])) for t in self._top_k(row))

    def of(self, token: int) -> SampledLogprob:
        """The record of ``token`` in the row last measured."""
        assert self._row is not None, "measure() first"
        record = SampledLogprob(token, self._logprob(self._row[token]), self._top)
        self._row = None
        return record

    def _logprob(self, logit: float) -> float:
        return max(float(logit) - self._norm, LOGPROB_FLOOR)


WIDE = 1024
"""How many of the likeliest tokens the grammar checks first when it refused the token drawn
(``Sampler._redraw``)."""


class Sampler:
    """An owned ``llama_sampler`` chain and grammar; ``sample`` picks and accepts the next
    token.

    The logit bias, the repetition penalty, greedy choice and top-k are done on the logits row
    itself (``LogitBias``, ``RepeatPenalty``, ``numpy.argmax``, ``TopK``); llama.cpp's chain
    then runs on the top-k candidates only (top-p, min-p, temperature, the seeded draw), or on
    the whole row when top-k is off. The tokens chosen are the ones llama.cpp's chain in
    ``common/sampling.cpp``'s order would choose from the same logits.

    A grammar is applied as llama.cpp's ``common_sampler_sample`` applies it by default
    (``grammar_first`` false, "grammar-based rejection sampling"): the token is drawn without
    it, then the grammar checks that one token; only when it refuses is the token drawn again
    from what the grammar allows. Applying a grammar to Gemma 3's 262,144 tokens costs more
    than the model's own step, and most tokens a model draws inside a JSON document are ones
    the grammar allows; when one is refused, the grammar sees the likeliest tokens first
    (``_redraw``), which draws what llama.cpp draws at a small part of the cost.

    Args:
        vocab: the model's ``llama_vocab *``.
        n_vocab: vocabulary size (the length of a logits row).
        params: the sampling settings.
        grammar: a GBNF grammar (root rule ``root``) to constrain output, or None.
        history: tokens before the first one sampled (the prompt): the repetition penalty's
            window starts with their last ``repeat_last_n``, as in llama-server.

    Attributes:
        logprob: after ``sample``, the sampled token's ``SampledLogprob`` when
            ``params.logprobs`` asked for them, else None.
        redrawn: how many tokens the grammar refused and were drawn again (for tests and
            measurements).

    Raises:
        SchemaError: llama.cpp rejected the grammar.
        InvalidParams: ``logit_bias`` names a token outside the vocabulary.
    """

    def __init__(self, vocab: Any, n_vocab: int, params: SamplingParams,
                 grammar: str | None = None, history: Sequence[int] = ()) -> None:
        self._chain = None
        self._grammar = None
        self.bias = LogitBias(params.logit_bias, n_vocab) if params.logit_bias else None
        self._logprobs = Logprobs(params.logprobs) if params.logprobs is not None else None
        self.logprob: SampledLogprob | None = None
        self.redrawn = 0
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._chain = chain
        self.n_vocab = n_vocab
        self._whole: tuple[Any, np.ndarray, Any] | None = None  # the whole row as candidates
        self.penalty: RepeatPenalty | None = None
        if params.repeat_last_n != 0 and (params.repeat_penalty != 1.0 or params.presence_penalty
                                          or params.frequency_penalty):
            self.penalty = RepeatPenalty(params.repeat_last_n, params.repeat_penalty,
                                         frequency=params.frequency_penalty,
                                         presence=params.presence_penalty, history=history)
        if grammar is not None:
            self._grammar = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(),
                                                                 b"root")
            if not self._grammar:
                self._grammar = None
                self.close()
                raise SchemaError("llama.cpp could not parse the grammar made from the schema")
            self._wide = TopK(WIDE)
        add = llama_cpp.llama_sampler_chain_add
        # greedy choice is the first largest logit (llama.cpp's greedy sampler picks the
        # same), and top-k is taken from the row (TopK)
        self._argmax = params.temperature <= 0
        self._top_k: TopK | None = None
        if params.temperature <= 0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
            return
        if 0 < params.top_k < n_vocab:
            self._top_k = TopK(params.top_k)
            self._cands = (llama_cpp.llama_token_data * params.top_k)()
            self._view = np.ctypeslib.as_array(self._cands)  # fields id, logit, p
            self._array = llama_cpp.llama_token_data_array(
                data=self._cands, size=params.top_k, selected=-1, sorted=True)
        elif params.top_k > 0:
            add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
        add(chain, llama_cpp.llama_sampler_init_dist(seed))

    def sample(self, ctx: Any, index: int) -> int:
        """Pick a token from the logits at batch position ``index`` and accept it (the logit
        bias, then the repetition penalty, edit that logits row first; with ``logprobs``
        asked for, the row is measured before them and ``self.logprob`` set; a grammar
        checks the token drawn, as the class docstring says)."""
        if (self.penalty is None and self.bias is None and self._logprobs is None
                and not self._argmax and self._top_k is None and self._grammar is None):
            return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index),
                                    shape=(self.n_vocab,))
        if self._logprobs is not None:
            self._logprobs.measure(row)
        if self.bias is not None:
            self.bias.apply(row)
        if self.penalty is not None:
            self.penalty.apply(row)
        token = self._draw(row, ctx, index)
        if self._grammar is not None:
            if not self._allows(token):
                self.redrawn += 1
                token = self._redraw(row)
            llama_cpp.llama_sampler_accept(self._grammar, token)
        if self.penalty is not None:
            self.penalty.accept(token)
        if self._logprobs is not None:
            self.logprob = self._logprobs.of(token)
        return token

    def _draw(self, row: np.ndarray, ctx: Any, index: int) -> int:
        """The token the chain picks from ``row``, the logits row of ``ctx`` at ``index``
        (accepted by the chain, not the grammar)."""
        if self._argmax:
            return int(row.argmax())
        if self._top_k is not None:
            return self._from_candidates(row, self._top_k(row))
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def _allows(self, token: int) -> bool:
        """Whether the grammar, in its present state, allows ``token`` next."""
        one = llama_cpp.llama_token_data(id=token, logit=1.0, p=0.0)
        array = llama_cpp.llama_token_data_array(data=ctypes.pointer(one), size=1, selected=-1,
                                                 sorted=False)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return bool(np.isfinite(one.logit))

    def _redraw(self, row: np.ndarray) -> int:
        """The token drawn again from the tokens the grammar allows: what llama.cpp draws
        after applying the grammar to the whole row, then the chain (accepted by the chain).

        With top-k (greedy: k = 1), only the k likeliest allowed tokens can be drawn, so the
        grammar is first applied to the ``WIDE`` likeliest tokens of the row: when k of them
        are allowed, they are the k likeliest allowed tokens of the whole row. Only otherwise
        (or without top-k) does the grammar see the whole row, which on Gemma 3's 262,144
        tokens takes about 30 ms."""
        k = 1 if self._argmax else self._top_k.k if self._top_k is not None else 0
        best: np.ndarray | None = None
        if 0 < k <= WIDE < self.n_vocab:
            allowed = self._grammar_keeps(row, self._wide(row))
            if len(allowed) >= k:
                best = allowed[:k]
        if best is None:
            allowed = self._grammar_keeps(row, np.arange(self.n_vocab, dtype=np.int32))
            if k == 0:  # the chain on every allowed token
                return self._from_candidates(row, allowed, whole=True)
            best = allowed[np.argsort(-row[allowed], kind="stable")[:k]]
        if self._argmax:
            return int(best[0])
        return self._from_candidates(row, best)

    def _grammar_keeps(self, row: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The tokens of ``ids`` (likeliest first, or any order) the grammar allows next, in
        the same order."""
        array, view, data = self._candidates()
        part = view[:len(ids)]
        part["id"] = ids
        part["logit"] = row[ids]
        part["p"] = 0.0
        array.data, array.size, array.selected, array.sorted = data, len(ids), -1, False
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        kept = view[:array.size]
        return np.asarray(kept["id"][np.isfinite(kept["logit"])], dtype=np.int64)

    def _candidates(self) -> tuple[Any, np.ndarray, Any]:
        """A candidates array the size of the vocabulary (made on first use), its numpy
        view, and its data."""
        if self._whole is None:
            data = (llama_cpp.llama_token_data * self.n_vocab)()
            array = llama_cpp.llama_token_data_array(data=data, size=self.n_vocab, selected=-1,
                                                     sorted=False)
            self._whole = (array, np.ctypeslib.as_array(data), data)
        return self._whole

    def _from_candidates(self, row: np.ndarray, ids: np.ndarray, *, whole: bool = False) -> int:
        """Run the chain on the candidates ``ids`` and accept its choice: the top k (sorted,
        as llama.cpp's top-k leaves them; fewer when the grammar allows fewer), or with
        ``whole``, every token the grammar allows (any order)."""
        if whole:
            array, view, data = self._candidates()
        else:
            array, view, data = self._array, self._view, self._cands
        view = view[:len(ids)]
        view["id"] = ids
        view["logit"] = row[ids]
        view["p"] = 0.0
        array.data = data
        array.size = len(ids)
        array.selected = -1
        array.sorted = not whole
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise BackendError("the sampler chain selected no token")
        token = int(array.data[array.selected].id)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token

    def close(self) -> None:
        """Free the chain, every sampler in it, and the grammar. Idempotent."""
        if self._chain:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None

    def __del__(self) -> None:  # a generation submitted but never run
        with contextlib.suppress(Exception):
            self.close()
