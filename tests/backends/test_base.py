"""What ``backends/base.py`` gives every backend: the option rule, the ``Choice`` of scores or
of a pick, the choice by continuation scores, the token estimate, closing by ``with``."""

from __future__ import annotations

import math

import httpx
import pytest

from chinwag.backends.base import (
    check_options,
    continuation_choice,
    estimate_tokens,
    picked_choice,
    scored_choice,
)
from chinwag.backends.raw_http import HttpBackend
from chinwag.backends.scripted import ScriptedBackend
from chinwag.errors import InvalidParams


class ClosingCounter(ScriptedBackend):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_a_backend_is_a_context_manager_that_closes_it() -> None:
    with ClosingCounter() as backend:
        assert isinstance(backend, ClosingCounter) and backend.closed == 0
    assert backend.closed == 1
    with pytest.raises(RuntimeError, match="boom"), ClosingCounter() as failing:
        raise RuntimeError("boom")  # not swallowed
    assert failing.closed == 1


def test_leaving_the_with_block_closes_connections_and_close_stays_idempotent() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={}))
    with HttpBackend("http://svc.test", "/gen", transport=transport) as backend:
        assert not backend.client._client.is_closed
    assert backend.client._client.is_closed
    backend.close()


@pytest.mark.parametrize("options", [[], [""], ["a", ""]])
def test_check_options_refuses_no_options_and_empty_ones(options: list[str]) -> None:
    with pytest.raises(InvalidParams, match="options must be non-empty strings"):
        check_options(options)
    check_options(["a", " "])  # a space is an option


def test_scored_choice_takes_the_highest_score_and_the_first_of_equals() -> None:
    choice = scored_choice(["a", "b", "c"], [-3.0, -1.0, -1.0])
    assert (choice.index, choice.option, choice.logprob) == (1, "b", -1.0)
    assert choice.scores == [-3.0, -1.0, -1.0]


def test_picked_choice_scores_the_pick_zero_and_the_others_minus_inf() -> None:
    choice = picked_choice(["a", "b"], 0)
    assert (choice.index, choice.option, choice.logprob) == (0, "a", 0.0)
    assert choice.scores == [0.0, -math.inf]
    with pytest.raises(IndexError):
        picked_choice(["a", "b"], 2)


def test_continuation_choice_scores_only_the_tokens_an_option_adds() -> None:
    """Characters as tokens; each token's log-probability is minus its position, so an option
    scores the sum over the positions after the prompt."""
    seen: list[tuple[int, int]] = []

    def logprobs(tokens: list[int], start: int) -> list[float]:
        seen.append((len(tokens), start))
        return [-float(i) for i in range(start, len(tokens))]

    choice = continuation_choice("ab", ["c", "cd"], lambda text: [ord(c) for c in text],
                                 logprobs)
    assert seen == [(3, 2), (4, 2)]
    assert choice.scores == [-2.0, -5.0] and choice.option == "c"
    with pytest.raises(InvalidParams):
        continuation_choice("ab", [], lambda text: [], logprobs)


def test_the_estimate_is_four_characters_a_token_rounded_up() -> None:
    assert [estimate_tokens(t) for t in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]
