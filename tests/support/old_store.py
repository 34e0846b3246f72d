"""A conversation database as an older chinwag left it, for the migration tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from chinwag.store.database import MIGRATIONS, _statements


@contextmanager
def database_at_version(path: Path, version: int) -> Iterator[sqlite3.Connection]:
    """A raw connection to a new file at schema ``version`` (the first ``version``
    migrations applied), to fill with rows before ``Store`` opens (and upgrades) it."""
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        for script in MIGRATIONS[:version]:
            for statement in _statements(script):
                raw.execute(statement)
        raw.execute(f"PRAGMA user_version = {version}")
        yield raw
