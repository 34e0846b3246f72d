"""Knowledge sources: named pages, feeds and collections (PLACEHOLDER: being written)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel


class Source(BaseModel):
    """A knowledge source (placeholder)."""

    name: str
    kind: str
    url: str | None = None
    collection: str | None = None
    describe: str = ""
    triggers: tuple[str, ...] = ()
    max_items: int = 10
    refresh: float = 600.0
    budget_tokens: int = 400


class SourceRegistry:
    """The sources of a folder (placeholder)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def all(self) -> dict[str, Source]:
        return {}


def triggered(question: str, sources: list[Source]) -> list[Source]:
    """The sources whose triggers ``question`` hits (placeholder)."""
    return [s for s in sources if not s.triggers]
