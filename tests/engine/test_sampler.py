"""Grammars made from JSON Schemas; the repetition penalty (OpenAI's presence and frequency
penalties with it), the logit bias and top-k against llama.cpp's own samplers; the
log-probabilities reported."""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np
import pytest

from chinwag.engine import LlamaModel
from chinwag.engine.sampler import RepeatPenalty, Sampler, TopK, grammar_for_schema
from chinwag.errors import InvalidParams, SchemaError
from chinwag.types import SamplingParams


def test_string_characters_exclude_control_characters() -> None:
    """JSON strings may not hold raw newlines (RFC 8259 section 7); the grammar forbids them."""
    gbnf = grammar_for_schema({"type": "object", "properties": {"a": {"type": "string"}}})
    char_rule = next(line for line in gbnf.splitlines() if line.startswith("char ::="))
    assert r"\x00-\x1F" in char_rule


def test_empty_schema_is_any_json_with_bounded_whitespace() -> None:
    gbnf = grammar_for_schema({})
    assert "root" in gbnf and "{0,20}" in gbnf


def test_invalid_schema_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        grammar_for_schema({"type": 12})


# -- the repetition penalty and top-k against llama.cpp's own samplers ---------------------------

def test_penalty_window_slides_and_counts_like_llama_cpp() -> None:
    """Tokens leave the window oldest first; a token's penalty follows llama.cpp's formula:
    logit <= 0 multiplied, > 0 divided, then count * frequency + presence subtracted."""
    penalty = RepeatPenalty(3, 2.0, frequency=0.5, presence=0.25, history=[7, 1, 2, 2])
    row = np.array([1.0, 4.0, -3.0, 5.0], dtype=np.float32)
    penalty.apply(row)  # window 1, 2, 2: token 7 has left it
    assert row.tolist() == [1.0, 4.0 / 2 - 0.75, -3.0 * 2 - 1.25, 5.0]
    for token in (3, 3, 3):
        penalty.accept(token)
    row = np.array([1.0, 4.0, -3.0, 5.0], dtype=np.float32)
    penalty.apply(row)  # window 3, 3, 3
    assert row.tolist() == [1.0, 4.0, -3.0, 5.0 / 2 - 1.75]


def test_top_k_is_the_k_largest_logits_largest_first() -> None:
    rng = np.random.default_rng(7)
    top_k = TopK(40)
    for spread in (0.1, 3.0, 30.0):  # the gap guess must widen and narrow as rows change
        row = (rng.standard_normal(262_144) * spread).astype(np.float32)
        ids = top_k(row)
        assert ids.tolist() == np.argsort(-row, kind="stable")[:40].tolist()


class Reference:
    """A bare llama.cpp context continuing one prompt: logits for a test to sample from."""

    def __init__(self, model: LlamaModel, prompt: list[int]) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_threads, params.n_threads_batch = 512, 2, 2
        self.ctx = llama_cpp.llama_init_from_model(model.handle, params)
        self.batch = llama_cpp.llama_batch_init(512, 0, 1)
        self.pos = 0
        self.feed(prompt)

    def feed(self, tokens: list[int]) -> None:
        b = self.batch
        for i, token in enumerate(tokens):
            b.token[i], b.pos[i], b.n_seq_id[i] = token, self.pos + i, 1
            b.seq_id[i][0], b.logits[i] = 0, i == len(tokens) - 1
        b.n_tokens = len(tokens)
        assert llama_cpp.llama_decode(self.ctx, b) == 0
        self.pos += len(tokens)
        self.index = len(tokens) - 1

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)


def llama_chain(model: LlamaModel, params: SamplingParams, prompt: list[int]) -> object:
    """llama.cpp's own chain, in common/sampling.cpp's order, with its penalties sampler fed
    the prompt (as llama-server does)."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    if params.logit_bias:  # first in common/sampling.cpp's chain
        bias = (llama_cpp.llama_logit_bias * len(params.logit_bias))(
            *(llama_cpp.llama_logit_bias(t, b) for t, b in params.logit_bias.items()))
        add(chain, llama_cpp.llama_sampler_init_logit_bias(model.n_vocab, len(bias), bias))
    add(chain, llama_cpp.llama_sampler_init_penalties(
        model.n_vocab, params.repeat_last_n, params.repeat_penalty, params.frequency_penalty,
        params.presence_penalty))
    if params.temperature <= 0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
        add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        add(chain, llama_cpp.llama_sampler_init_dist(params.seed))
    for token in prompt:
        llama_cpp.llama_sampler_accept(chain, token)
    return chain


def side_by_side(model: LlamaModel, params: SamplingParams, text: str,
                 n: int = 48) -> tuple[list[int], list[int]]:
    """Tokens chosen by chinwag's ``Sampler`` and by llama.cpp's chain from the same logits,
    step by step (each continues with llama.cpp's choice)."""
    prompt = model.tokenize(text)
    ref = Reference(model, prompt)
    theirs_chain = llama_chain(model, params, prompt)
    ours = Sampler(model.vocab, model.n_vocab, params, history=prompt)
    mine: list[int] = []
    theirs: list[int] = []
    try:
        for _ in range(n):
            theirs.append(llama_cpp.llama_sampler_sample(theirs_chain, ref.ctx, ref.index))
            mine.append(ours.sample(ref.ctx, ref.index))  # edits the row: after theirs
            ref.feed([theirs[-1]])
    finally:
        ours.close()
        llama_cpp.llama_sampler_free(theirs_chain)
        ref.close()
    return mine, theirs


@pytest.mark.slow
def test_repeat_penalty_greedy_matches_llama_cpps_penalties_sampler(model: LlamaModel) -> None:
    """Greedy with a strong penalty on a repetitive prompt: token for token what llama.cpp's
    penalties sampler (which walks the whole vocabulary) chooses, and not what greedy without
    a penalty chooses."""
    text = "one two one two one two one two one two one two"
    params = SamplingParams(temperature=0, repeat_penalty=1.5, repeat_last_n=16)
    mine, theirs = side_by_side(model, params, text)
    assert mine == theirs
    plain, _ = side_by_side(model, params.with_(repeat_penalty=1.0), text)
    assert plain != mine  # the penalty changed the text: this test can tell


@pytest.mark.slow
def test_seeded_sampling_matches_llama_cpps_chain(model: LlamaModel) -> None:
    """Temperature, top-k, top-p, min-p, a seed and the default penalty: chinwag's top-k on
    the row plus llama.cpp's chain on the candidates draws what llama.cpp's whole chain
    draws."""
    params = SamplingParams(temperature=0.9, seed=42, repeat_penalty=1.1, top_k=40)
    mine, theirs = side_by_side(model, params, "Once upon a time, in a small village,")
    assert mine == theirs
    assert len(set(theirs)) > 10  # a real draw, not a loop on one token


# -- grammars: llama.cpp's rejection sampling ----------------------------------------------------

PERSON = grammar_for_schema({"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"]})


def rejection_sample(model: LlamaModel, ctx: object, index: int, chain: object,
                     grammar: object) -> int:
    """llama.cpp's ``common_sampler_sample`` with ``grammar_first`` false, from llama.cpp's
    own samplers: the chain draws from the whole row; the grammar checks that one token; if it
    refuses, the grammar and then the chain run on the whole row again. Accepts the token."""
    def whole_row() -> tuple[object, object]:
        data = (llama_cpp.llama_token_data * model.n_vocab)()
        view = np.ctypeslib.as_array(data)
        view["id"] = np.arange(model.n_vocab)
        view["logit"] = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index),
                                              shape=(model.n_vocab,))
        return data, llama_cpp.llama_token_data_array(data=data, size=model.n_vocab,
                                                      selected=-1, sorted=False)

    _data, array = whole_row()  # _data: the array points into it
    llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
    token = array.data[array.selected].id
    one = llama_cpp.llama_token_data(token, 1.0, 0.0)
    llama_cpp.llama_sampler_apply(grammar, ctypes.byref(llama_cpp.llama_token_data_array(
        data=ctypes.pointer(one), size=1, selected=-1, sorted=False)))
    if one.logit == float("-inf"):
        _data, array = whole_row()
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
        token = array.data[array.selected].id
    llama_cpp.llama_sampler_accept(grammar, token)
    llama_cpp.llama_sampler_accept(chain, token)
    return int(token)


def with_grammar(model: LlamaModel, params: SamplingParams, text: str,
                 n: int = 40) -> tuple[list[int], list[int], int]:
    """Tokens chosen under ``PERSON`` by chinwag's ``Sampler`` and by ``rejection_sample``
    from the same logits, step by step, until the end of the document; and how many tokens
    chinwag's grammar refused and drew again."""
    prompt = model.tokenize(text)
    ref = Reference(model, prompt)
    chain = llama_chain(model, params, prompt)
    grammar = llama_cpp.llama_sampler_init_grammar(model.vocab, PERSON.encode(), b"root")
    ours = Sampler(model.vocab, model.n_vocab, params, PERSON, history=prompt)
    mine: list[int] = []
    theirs: list[int] = []
    try:
        for _ in range(n):
            theirs.append(rejection_sample(model, ref.ctx, ref.index, chain, grammar))
            mine.append(ours.sample(ref.ctx, ref.index))  # edits the row: after theirs
            if model.is_eog(theirs[-1]):
                break
            ref.feed([theirs[-1]])
        return mine, theirs, ours.redrawn
    finally:
        ours.close()
        llama_cpp.llama_sampler_free(grammar)
        llama_cpp.llama_sampler_free(chain)
        ref.close()


@pytest.mark.slow
@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0, repeat_penalty=1.0),
    SamplingParams(temperature=0.9, seed=11, repeat_penalty=1.1, top_k=40),
    SamplingParams(temperature=0.9, seed=5, repeat_penalty=1.0, top_k=0)],
    ids=["greedy", "seeded", "no-top-k"])
def test_a_grammar_checks_the_token_drawn_as_llama_cpp_does(model: LlamaModel,
                                                           params: SamplingParams) -> None:
    """The token is drawn without the grammar, checked, and drawn again from what the
    grammar allows only when it is refused: token for token what llama.cpp's
    ``common_sampler_sample`` chooses, and some tokens did take the second draw."""
    mine, theirs, redrawn = with_grammar(model, params, "A person, as JSON:\n")
    assert mine == theirs
    assert 0 < redrawn < len(mine)  # both paths ran
    assert model.is_eog(theirs[-1])  # a whole document, to its end


# -- OpenAI's presence and frequency penalties, logit bias and log-probabilities ------------------

@pytest.mark.slow
def test_presence_and_frequency_penalties_match_llama_cpps_penalties_sampler(
        model: LlamaModel) -> None:
    """Without a repeat penalty, OpenAI's two penalties alone still build the penalty, with
    llama.cpp's arithmetic: token for token what its penalties sampler chooses."""
    text = "one two one two one two one two one two one two"
    params = SamplingParams(temperature=0, repeat_penalty=1.0, repeat_last_n=16,
                            presence_penalty=1.5, frequency_penalty=1.0)
    mine, theirs = side_by_side(model, params, text, n=24)
    assert mine == theirs
    plain, _ = side_by_side(model, params.with_(presence_penalty=0.0, frequency_penalty=0.0),
                            text, n=24)
    assert plain != mine  # the penalties changed the text: this test can tell


@pytest.mark.slow
def test_logit_bias_matches_llama_cpps_logit_bias_sampler(model: LlamaModel) -> None:
    """Seeded sampling with some tokens banned and one favoured: what llama.cpp's chain, with
    its logit-bias sampler first, draws."""
    text = "Once upon a time, in a small village,"
    plain, _ = side_by_side(model, SamplingParams(temperature=0, repeat_penalty=1.0), text,
                            n=8)
    bias = {plain[0]: -100.0, plain[1]: -100.0, model.tokenize(" dragon")[-1]: 4.0}
    params = SamplingParams(temperature=0.9, seed=7, logit_bias=bias)
    mine, theirs = side_by_side(model, params, text, n=24)
    assert mine == theirs
    assert plain[0] not in mine and plain[1] not in mine


def saved_row(model: LlamaModel, text: str) -> tuple[Reference, np.ndarray, np.ndarray]:
    """A context after ``text``; its logits row (edited in place by samplers) and a copy."""
    ref = Reference(model, model.tokenize(text))
    row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ref.ctx, ref.index),
                                shape=(model.n_vocab,))
    return ref, row, row.copy()


def greedy_with(model: LlamaModel, **changes: object) -> Sampler:
    return Sampler(model.vocab, model.n_vocab,
                   SamplingParams(temperature=0, repeat_penalty=1.0).with_(**changes))


@pytest.mark.slow
def test_bias_of_minus_100_bans_a_token_and_plus_100_forces_one(model: LlamaModel) -> None:
    ref, row, raw = saved_row(model, "The capital of France is")
    try:
        best = int(raw.argmax())
        banana = model.tokenize(" banana")[-1]
        assert greedy_with(model).sample(ref.ctx, ref.index) == best
        row[:] = raw
        assert greedy_with(model, logit_bias={best: -100.0}).sample(
            ref.ctx, ref.index) != best
        row[:] = raw
        assert greedy_with(model, logit_bias={banana: 100.0}).sample(
            ref.ctx, ref.index) == banana
    finally:
        ref.close()


@pytest.mark.slow
def test_logprobs_are_the_models_distribution_before_bias_and_penalty(
        model: LlamaModel) -> None:
    """As llama-server reports by default: the softmax of the raw row, whatever the bias and
    penalty then did to it; the top alternatives most likely first."""
    ref, _, raw = saved_row(model, "one two one two one two")
    try:
        best = int(raw.argmax())
        sampler = Sampler(model.vocab, model.n_vocab, SamplingParams(
            temperature=0, repeat_penalty=1.3, logit_bias={best: -100.0}, logprobs=3),
            history=model.tokenize("one two one two one two"))
        token = sampler.sample(ref.ctx, ref.index)
        record = sampler.logprob
        wide = raw.astype(np.float64)
        expected = wide - wide.max() - np.log(np.exp(wide - wide.max()).sum())
        assert record is not None and record.token == token != best
        assert record.logprob == pytest.approx(expected[token], abs=1e-6)
        assert [t for t, _ in record.top] == np.argsort(-raw, kind="stable")[:3].tolist()
        assert [lp for _, lp in record.top] == pytest.approx(
            expected[np.argsort(-raw, kind="stable")[:3]].tolist(), abs=1e-6)
        assert record.top[0][0] == best  # banned from sampling, still the likeliest
        sampler.close()
    finally:
        ref.close()


class FakeLogits:
    """Stands in for a context: counts who reads the logits row, and lets llama.cpp's chain
    "pick" token 7 without a model."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, n_vocab: int) -> None:
        self.row = (ctypes.c_float * n_vocab)()
        self.reads = 0
        monkeypatch.setattr(llama_cpp, "llama_get_logits_ith", self._logits)
        monkeypatch.setattr(llama_cpp, "llama_sampler_sample", lambda chain, ctx, i: 7)

    def _logits(self, ctx: object, index: int) -> object:
        self.reads += 1
        return ctypes.cast(self.row, ctypes.POINTER(ctypes.c_float))


def test_unused_penalties_bias_and_logprobs_cost_nothing(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """With none of them (top-k off, so llama.cpp's chain samples), the row is not even
    read; a bias edits only its tokens, in the row, and takes the row path."""
    fake = FakeLogits(monkeypatch, 100)
    plain = SamplingParams(top_k=0, repeat_penalty=1.0)
    assert Sampler(None, 100, plain).sample(None, 0) == 7 and fake.reads == 0
    biased = Sampler(None, 100, plain.with_(logit_bias={3: -100.0, 9: 2.5}))
    assert biased.sample(None, 0) == 7 and fake.reads == 1
    assert [i for i, v in enumerate(fake.row) if v] == [3, 9]
    assert (fake.row[3], fake.row[9]) == (-100.0, 2.5)
    for changes in ({"presence_penalty": 0.5}, {"frequency_penalty": -0.5}, {"logprobs": 0}):
        Sampler(None, 100, plain.with_(**changes)).sample(None, 0)
    assert fake.reads == 4


def test_a_bias_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(InvalidParams) as err:
        Sampler(None, 100, SamplingParams(logit_bias={100: 1.0}))
    assert err.value.param == "logit_bias"
