"""KV state of idle conversations, kept outside the live context: in RAM and on disk.

An entry is the tokens a sequence held and the bytes ``llama_state_seq_get_data`` gave for
them (its KV cells: about 14 KiB a token for Gemma 3 270M). The engine puts a slot's state here
before a new sequence overwrites it, and looks here when a prompt arrives whose prefix no free
slot holds; ``Engine`` does the llama.cpp calls, this module only keeps the bytes.

- RAM: least recently used entries leave first once their bytes exceed ``ram_bytes``.
- Disk (optional, ``folder``): every entry put in RAM is also written to a file in a sub-folder
  named after the model's fingerprint, and files are listed at start, so a restarted server
  finds the conversations of the last one. Files beyond ``disk_bytes`` go, oldest first. A file
  that cannot be read (truncated, another format) is skipped with its reason logged.

An entry whose tokens are a prefix of a newer entry's is dropped: the newer one serves every
prompt the older one could (an entry can only be continued from its end, see ``Engine``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chinwag.errors import ConfigError

log = logging.getLogger(__name__)

_MAGIC = b"CHINWAG-KV 1\n"


@dataclass(eq=False)
class CacheEntry:
    """One saved sequence: ``tokens`` and, when in RAM, its state bytes.

    Attributes:
        key: hex digest of the tokens (the file name on disk).
        tokens: the tokens whose KV cells ``state`` holds, in order.
        state: ``llama_state_seq_get_data`` bytes; None when only on disk.
        size: length of the state in bytes.
        path: the file on disk, if written.
    """

    key: str
    tokens: list[int]
    state: bytes | None
    size: int
    path: Path | None = None


@dataclass
class CacheStats:
    """Counters of prompt-cache use since start (``/metrics`` reports them).

    ``hits_*``: sequences that started from cached KV cells (``slot``: a free slot still held
    them; ``ram`` / ``disk``: restored from this cache). ``misses``: sequences that reused
    nothing. ``evictions``: entries dropped from RAM for room. ``cached_tokens``: prompt tokens
    not computed thanks to the cache.
    """

    hits_slot: int = 0
    hits_ram: int = 0
    hits_disk: int = 0
    misses: int = 0
    evictions: int = 0
    disk_writes: int = 0
    cached_tokens: int = 0
    restore_failures: int = 0


def token_key(tokens: list[int]) -> str:
    """sha256 hex digest of a token list (int32 little-endian)."""
    return hashlib.sha256(np.asarray(tokens, dtype="<i4").tobytes()).hexdigest()


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.nonzero(np.asarray(a[:n]) != np.asarray(b[:n]))[0]
    return int(diff[0]) if diff.size else n


class PromptCache:
    """RAM (and optional disk) store of sequences' KV state, least recently used first out.

    Args:
        ram_bytes: most state bytes held in RAM (0: RAM keeps nothing, disk still works).
        folder: where to write entries, or None for RAM only. Files go in
            ``folder/<fingerprint>/``.
        fingerprint: names the model and KV layout the states belong to; states of another
            model are never read.
        disk_bytes: most bytes of files kept in the model's sub-folder.
        n_swa: the model's sliding-window length (0: none). A state saved from a sequence
            longer than the window holds only the window's cells in those layers, so it can
            only be continued from its end (``llama_kv_cache::state_write`` skips masked cells).

    Raises:
        ConfigError: ``folder`` cannot be created or is not a folder.

    Thread safety: all methods take an internal lock; disk writes run in one background
    thread (``flush`` waits for them).
    """

    def __init__(self, ram_bytes: int, folder: Path | None = None, *, fingerprint: str = "",
                 disk_bytes: int = 4 << 30, n_swa: int = 0) -> None:
        self.ram_bytes = ram_bytes
        self.n_swa = n_swa
        self.disk_bytes = disk_bytes
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()  # least recent first
        self._ram_used = 0
        self._folder = folder / fingerprint if folder is not None else None
        self._writer: ThreadPoolExecutor | None = None
        if self._folder is not None:
            try:
                self._folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"KV cache folder {folder}: cannot use it: "
                                  f"{e.strerror or e}") from None
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chinwag-kv")
            self._load_index()

    @property
    def persistent(self) -> bool:
        """Whether entries are written to disk."""
        return self._folder is not None

    @property
    def ram_used(self) -> int:
        """Bytes of state held in RAM now."""
        return self._ram_used

    def __len__(self) -> int:
        return len(self._entries)

    # -- lookup --------------------------------------------------------------------------------

    def best(self, prompt: list[int]) -> tuple[CacheEntry | None, int]:
        """The entry sharing the longest prefix with ``prompt``, and that prefix's length.

        With sliding-window attention, an entry longer than the window counts only when its
        tokens, all but possibly the last, begin ``prompt``: the next token's window must lie
        within the cells saved. Returns ``(None, 0)`` when no entry shares a token.
        """
        with self._lock:
            found, length = None, 0
            for entry in self._entries.values():
                n = common_prefix(entry.tokens, prompt)
                if n > length and self.usable(len(entry.tokens), n):
                    found, length = entry, n
            return found, length

    def usable(self, n_tokens: int, n_keep: int) -> bool:
        """Whether a state of ``n_tokens`` can be truncated to its first ``n_keep`` and
        continued (sliding-window layers keep only the last ``n_swa`` positions)."""
        return self.n_swa <= 0 or n_tokens <= self.n_swa or n_keep >= n_tokens - 1

    def state_of(self, entry: CacheEntry) -> bytes | None:
        """The entry's state bytes, read from disk if RAM no longer holds them (None if the
        file is gone or unreadable: the entry is then dropped). Marks the entry recently
        used."""
        with self._lock:
            if entry.key in self._entries:
                self._entries.move_to_end(entry.key)
            state = entry.state
        if state is not None or entry.path is None:
            return state
        try:
            state = _read_file(entry.path)[1]
        except (OSError, ValueError) as e:
            log.warning("prompt cache: cannot read %s: %s", entry.path, e)
            self.remove(entry)
            return None
        return state

    # -- storing -------------------------------------------------------------------------------

    def put(self, tokens: list[int], state: bytes) -> CacheEntry:
        """Keep ``state`` for ``tokens`` (in RAM, and on disk when a folder is set).

        Entries whose tokens are a prefix of ``tokens`` are dropped; then least recently used
        entries leave RAM until ``ram_bytes`` holds (they stay on disk, if written).
        """
        key = token_key(tokens)
        entry = CacheEntry(key, list(tokens), state, len(state))
        if self._folder is not None:
            entry.path = self._folder / f"{key}.kv"
        with self._lock:
            for other in list(self._entries.values()):
                if len(other.tokens) <= len(tokens) and \
                        common_prefix(other.tokens, tokens) == len(other.tokens):
                    self._drop(other)
            self._entries[key] = entry
            self._ram_used += entry.size
            self._shrink_ram()
        if self._writer is not None:
            self._writer.submit(self._write, entry, state)
        return entry

    def remove(self, entry: CacheEntry) -> None:
        """Drop an entry from RAM and disk."""
        with self._lock:
            self._drop(entry)

    def flush(self) -> None:
        """Wait for pending disk writes."""
        if self._writer is not None:
            self._writer.submit(lambda: None).result()

    def close(self) -> None:
        """Finish pending disk writes and stop the writer thread. Idempotent."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _drop(self, entry: CacheEntry) -> None:
        if self._entries.pop(entry.key, None) is not None and entry.state is not None:
            self._ram_used -= entry.size
            entry.state = None
        if entry.path is not None:
            path, entry.path = entry.path, None
            if self._writer is not None:
                self._writer.submit(_unlink, path)
            else:
                _unlink(path)

    def _shrink_ram(self) -> None:
        for entry in list(self._entries.values()):
            if self._ram_used <= self.ram_bytes:
                break
            if entry.state is None:
                continue
            self._ram_used -= entry.size
            entry.state = None
            self.stats.evictions += 1
            if entry.path is None:
                del self._entries[entry.key]

    # -- disk ----------------------------------------------------------------------------------

    def _write(self, entry: CacheEntry, state: bytes) -> None:
        path = entry.path
        if path is None:  # dropped before it was written
            return
        header = json.dumps({"n_tokens": len(entry.tokens), "size": len(state)}).encode()
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(_MAGIC + header + b"\n")
                f.write(np.asarray(entry.tokens, dtype="<i4").tobytes())
                f.write(state)
            os.replace(tmp, path)
            self.stats.disk_writes += 1
        except OSError as e:
            log.warning("prompt cache: cannot write %s: %s", path, e)
            _unlink(tmp)
            return
        if entry.path is None:  # dropped while being written
            _unlink(path)
        self._shrink_disk()

    def _shrink_disk(self) -> None:
        assert self._folder is not None
        files = sorted(self._folder.glob("*.kv"), key=_mtime)
        total = sum(_size(f) for f in files)
        for f in files:
            if total <= self.disk_bytes:
                break
            total -= _size(f)
            _unlink(f)
            with self._lock:
                entry = self._entries.get(f.stem)
                if entry is not None and entry.path == f:
                    entry.path = None
                    if entry.state is None:
                        del self._entries[entry.key]

    def _load_index(self) -> None:
        assert self._folder is not None
        for f in sorted(self._folder.glob("*.kv"), key=_mtime):
            try:
                tokens = _read_file(f, tokens_only=True)[0]
            except (OSError, ValueError) as e:
                log.warning("prompt cache: skipping %s: %s", f, e)
                continue
            self._entries[f.stem] = CacheEntry(f.stem, tokens, None, _size(f), path=f)


def _read_file(path: Path, tokens_only: bool = False) -> tuple[list[int], bytes | None]:
    """Tokens and state of a cache file.

    Raises:
        ValueError: not a chinwag KV file, or shorter than its header says.
        OSError: it cannot be read.
    """
    with open(path, "rb") as f:
        if f.read(len(_MAGIC)) != _MAGIC:
            raise ValueError("not a chinwag KV cache file")
        try:
            header = json.loads(f.readline())
            n_tokens, size = int(header["n_tokens"]), int(header["size"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"bad header: {e}") from None
        raw = f.read(4 * n_tokens)
        if len(raw) != 4 * n_tokens:
            raise ValueError("truncated token list")
        tokens = np.frombuffer(raw, dtype="<i4").tolist()
        if tokens_only:
            return tokens, None
        state = f.read(size + 1)
        if len(state) != size:
            raise ValueError(f"state is {len(state)} bytes, the header says {size}")
        return tokens, state


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("prompt cache: cannot remove %s: %s", path, e)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
