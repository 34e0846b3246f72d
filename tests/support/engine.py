"""Helpers for tests that run the engine: read generations, compare greedy outputs."""

from __future__ import annotations

import threading

from chinwag.engine import Engine
from chinwag.types import SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=12, repeat_penalty=1.0)


def greedy(engine: Engine, tokens: list[int],
           params: SamplingParams = GREEDY) -> list[int]:
    """Every token of a generation, read in this thread."""
    return list(engine.run(engine.submit(tokens, params)))


class Consumer:
    """Reads one generation in a thread of its own: its tokens and how it ended.

    ``started`` is set once two tokens came (or it ended).
    """

    def __init__(self, engine: Engine, prompt: list[int], params: SamplingParams) -> None:
        self.gen = engine.submit(prompt, params)
        self.engine = engine
        self.tokens: list[int] = []
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._read)
        self.thread.start()

    def _read(self) -> None:
        try:
            for token in self.engine.run(self.gen):
                self.tokens.append(token)
                if len(self.tokens) >= 2:
                    self.started.set()
        except BaseException as e:  # looked at by the test
            self.error = e
        finally:
            self.started.set()

    def join(self) -> None:
        self.thread.join(120)
        assert not self.thread.is_alive()


def assert_same_up_to_a_near_tie(engine: Engine, prompt: list[int], a: list[int],
                                 b: list[int]) -> None:
    """``a`` and ``b`` (greedy continuations of ``prompt``) are equal, or first differ where
    the two tokens are within 0.5 nats of each other when scored alone (llama.cpp's CPU
    kernels round differently for another batch shape)."""
    assert len(a) == len(b)
    if a == b:
        return
    k = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    prefix = prompt + a[:k]
    gap = engine.logprobs([*prefix, a[k]], len(prefix))[0] - \
        engine.logprobs([*prefix, b[k]], len(prefix))[0]
    assert abs(gap) < 0.5, (k, gap)
