"""A scripted backend that holds its replies until the test lets them go."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from chinwag.backends.scripted import ScriptedBackend
from chinwag.cancellation import on_cancel
from chinwag.types import Event, SamplingParams


class GatedBackend(ScriptedBackend):
    """Holds each reply after ``hold_after`` pieces until ``gate`` is set (or the generation
    is cancelled); ``holding`` is set once a reply is held."""

    def __init__(self, *replies: str, hold_after: int = 0) -> None:
        super().__init__(replies)
        self.hold_after = hold_after
        self.gate = threading.Event()
        self.holding = threading.Event()

    def generate(self, prompt: str, params: SamplingParams) -> Iterator[Event]:
        on_cancel(self.gate.set)
        events = super().generate(prompt, params)

        def held() -> Iterator[Event]:
            for i, event in enumerate(events):
                if i == self.hold_after:
                    self.holding.set()
                    self.gate.wait(30)
                yield event
        return held()
