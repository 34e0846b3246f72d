"""Uploaded files, as OpenAI's Files API keeps them: a row in the database (``files``: id,
purpose, filename, bytes, created_at) and the bytes in a folder, one file per id
(``{folder}/{id}``). A batch's results become files of this kind when it ends (purpose
``batch_output``).

Ids look like OpenAI's (``file-`` and 24 hex digits). Uploads are copied in blocks and
refused past ``max_bytes`` (``FileTooLarge``) with nothing kept.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from chinwag.errors import FileNotFound, FileTooLarge, InvalidParams
from chinwag.store import Store

PURPOSES = ("batch",)
"""The purposes an upload may have (OpenAI's others, for assistants and fine-tuning, are
refused: chinwag has no use for them)."""

BATCH_OUTPUT = "batch_output"
"""The purpose of a batch's output and error files."""

_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileRecord:
    """One stored file.

    Attributes:
        id: ``file-`` and 24 hex digits.
        purpose: ``batch`` (uploaded) or ``batch_output`` (a batch's results).
        filename: the name it was uploaded under (or the result's name).
        bytes: its size.
        created_at: unix seconds.
    """

    id: str
    purpose: str
    filename: str
    bytes: int
    created_at: int

    def as_openai(self) -> dict[str, Any]:
        """OpenAI's File object (``status`` is always ``processed``: nothing is processed
        after upload)."""
        return {"id": self.id, "object": "file", "bytes": self.bytes,
                "created_at": self.created_at, "filename": self.filename,
                "purpose": self.purpose, "status": "processed", "status_details": None,
                "expires_at": None}


class FileStore:
    """The server's files.

    Args:
        store: the database (its ``files`` table).
        folder: where the bytes live (created when needed).
        max_bytes: the largest upload.
    """

    def __init__(self, store: Store, folder: Path, max_bytes: int) -> None:
        self.store, self.folder, self.max_bytes = store, folder, max_bytes

    def path(self, file_id: str) -> Path:
        """Where a file's bytes are (``FileNotFound`` if there is no such file)."""
        self.get(file_id)
        return self.folder / file_id

    def add(self, filename: str, purpose: str, source: IO[bytes]) -> FileRecord:
        """Store an upload read from ``source``.

        Raises:
            InvalidParams: ``purpose`` is not one of ``PURPOSES``, or ``filename`` is empty.
            FileTooLarge: the upload is over ``max_bytes`` (nothing is kept).
            StoreError, OSError: the database or the folder cannot be written.
        """
        if purpose not in PURPOSES:
            raise InvalidParams(f"purpose must be one of {', '.join(PURPOSES)}, not "
                                f"{purpose!r}", param="purpose")
        if not filename:
            raise InvalidParams("the upload has no file name", param="file")
        file_id = _new_id()
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / file_id
        size = 0
        try:
            with target.open("wb") as out:
                while block := source.read(_BLOCK):
                    size += len(block)
                    if size > self.max_bytes:
                        raise FileTooLarge(f"the file is larger than the server's limit of "
                                           f"{self.max_bytes} bytes (max_file_bytes)")
                    out.write(block)
            return self._insert(file_id, purpose, filename, size)
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def adopt(self, path: Path, filename: str, purpose: str = BATCH_OUTPUT) -> FileRecord:
        """Make ``path`` (a file in ``folder``, such as a batch's results) a stored file: it
        is renamed to its new id."""
        file_id = _new_id()
        os.replace(path, self.folder / file_id)
        return self._insert(file_id, purpose, filename, (self.folder / file_id).stat().st_size)

    def get(self, file_id: str) -> FileRecord:
        """The file with this id.

        Raises:
            FileNotFound: there is none.
        """
        with self.store.transaction("read a file", write=False) as db:
            row = db.execute("SELECT id, purpose, filename, bytes, created_at FROM files "
                             "WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise FileNotFound(file_id)
        return FileRecord(*row)

    def page(self, *, purpose: str | None = None, after: str | None = None,
             limit: int = 10000, newest_first: bool = True) -> tuple[list[FileRecord], bool]:
        """Files in the order they were stored, newest first (or oldest first), after the
        file ``after`` in that order, at most ``limit`` of them; and whether there are more.

        Raises:
            FileNotFound: no file ``after``."""
        order = "DESC" if newest_first else "ASC"
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if purpose is not None:
            where.append("purpose = ?")
            args.append(purpose)
        if after is not None:
            self.get(after)
            where.append(f"rowid {'<' if newest_first else '>'} "
                         "(SELECT rowid FROM files WHERE id = ?)")
            args.append(after)
        with self.store.transaction("list files", write=False) as db:
            rows = db.execute(
                "SELECT id, purpose, filename, bytes, created_at FROM files WHERE "
                f"{' AND '.join(where)} ORDER BY rowid {order} LIMIT ?",
                (*args, limit + 1)).fetchall()
        return [FileRecord(*row) for row in rows[:limit]], len(rows) > limit

    def delete(self, file_id: str) -> None:
        """Delete a file and its bytes.

        Raises:
            FileNotFound: there is none.
        """
        with self.store.transaction("delete a file") as db:
            if db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount == 0:
                raise FileNotFound(file_id)
        (self.folder / file_id).unlink(missing_ok=True)

    def _insert(self, file_id: str, purpose: str, filename: str, size: int) -> FileRecord:
        record = FileRecord(file_id, purpose, filename, size, int(time.time()))
        with self.store.transaction("store a file") as db:
            db.execute("INSERT INTO files (id, purpose, filename, bytes, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", (record.id, record.purpose, record.filename,
                                                  record.bytes, record.created_at))
        return record


def _new_id() -> str:
    return f"file-{uuid.uuid4().hex[:24]}"
