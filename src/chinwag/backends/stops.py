"""Stop strings over a stream of text pieces.

A stop string can arrive split over several tokens ("\\nTrav" + "eller:"), so text that could
be the start of a stop string is held back until the next piece decides it. This is what
llama.cpp's server does (``find_partial_stop_string``) and what OpenAI clients expect: the stop
string itself is never sent.
"""

from __future__ import annotations

from collections.abc import Sequence


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
