"""Stop strings over a stream of text pieces.

A stop string can arrive split over several tokens ("\\nTrav" + "eller:"), so text that could
be the start of a stop string is held back until the next piece decides it. This is what
llama.cpp's server does (``find_partial_stop_string``) and what OpenAI clients expect: the stop
string itself is never sent. ``StopEvents`` makes token events of what the scanner lets out,
keeping tokens' log-probabilities with their text.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from chinwag.types import TokenEvent, TokenLogprob


class StopScanner:
    """Feed text pieces; get back what is safe to emit and whether a stop string was seen.

    Args:
        stop: the stop strings (empty ones are ignored).
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = tuple(s for s in stop if s)
        self._held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add ``piece``; return the text that can be emitted now.

        After a stop string is seen, ``stopped`` is True and everything from the stop string
        on is dropped.
        """
        if self.stopped:
            return ""
        text = self._held + piece
        if not self.stop:
            self._held = ""
            return text
        cut = min((i for s in self.stop if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = self._partial_suffix(text)
        self._held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        """The text held back at the end of the stream (no stop string completed)."""
        text, self._held = self._held, ""
        return "" if self.stopped else text

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best


class StopEvents:
    """Token events from a stream of text pieces: a ``StopScanner`` over the text, with each
    piece's log-probability records handed to the event that carries the end of the piece's
    text (the scanner may hold text back).

    Every record comes out exactly once, in order, except after a stop string: the records of
    text wholly inside or after it are dropped, as that text is (a token partly before it
    keeps its record). A record may come on an event of no text: a token whose text a stop
    string cut, or one that decoded to nothing (part of a character) at the end.

    Args:
        stop: the stop strings.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self.scanner = StopScanner(stop)
        self._pending: deque[tuple[int, int, tuple[TokenLogprob, ...]]] = deque()
        self._decoded = 0  # characters fed so far
        self._sent = 0  # characters let out so far

    @property
    def stopped(self) -> bool:
        """A stop string was seen: nothing more comes out."""
        return self.scanner.stopped

    def feed(self, piece: str, records: Sequence[TokenLogprob] = ()) -> TokenEvent | None:
        """The event to send for ``piece`` (decoded text, maybe "") whose tokens have
        ``records``, or None when nothing is to be sent yet."""
        start = self._decoded
        self._decoded += len(piece)
        if records:
            self._pending.append((start, self._decoded, tuple(records)))
        text = self.scanner.feed(piece)
        return self._event(text) if text or self.stopped else None

    def finish(self, piece: str = "") -> TokenEvent | None:
        """The last event: ``piece`` (what a decoder held to the end) and the text the
        scanner held back, with every record left; None when there is nothing to send."""
        text = self.scanner.feed(piece)
        if self.stopped:
            return self._event(text)
        text += self.scanner.flush()
        records = tuple(r for _, _, group in self._pending for r in group)
        self._pending.clear()
        return TokenEvent(text, records) if text or records else None

    def _event(self, text: str) -> TokenEvent | None:
        """``text`` let out by the scanner, with the records whose text ends in it (after a
        stop string: whose text starts before it; the rest are dropped)."""
        self._sent += len(text)
        out: list[TokenLogprob] = []
        while self._pending:
            start, end, records = self._pending[0]
            if not (end <= self._sent or (self.stopped and start < self._sent)):
                break
            out += records
            self._pending.popleft()
        if self.stopped:
            self._pending.clear()
        return TokenEvent(text, tuple(out)) if text or out else None
