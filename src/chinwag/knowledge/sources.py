"""Knowledge sources: named pages, feeds and fact collections a persona's answers can draw on.

A source file (``~/.config/chinwag/sources/weather.yaml``, or ``--sources DIR``)::

    kind: feed                      # page | feed | collection
    url: https://example.org/limbo/weather.rss
    describe: "Today's weather in Limbo:"   # put before the content in the prompt
    triggers: [weather, rain, snow, "will it be sunny"]   # none: always used
    max_items: 5                    # feed items kept
    refresh: 10m                    # seconds, or 90s / 10m / 1h / 1d; 0 = fetch every time
    budget_tokens: 300              # most tokens of the prompt it may take

The source's ``name`` is the file's stem unless the file says otherwise. A ``collection``
source names a fact collection (``collection: lore``) instead of a URL.

``SourceRegistry`` holds the sources of one folder for a server (``PUT /sources/{name}``
writes the folder's files); ``triggered`` picks the sources a question calls for.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from chinwag.errors import FetchError, SourceError, UnknownSource
from chinwag.knowledge.fetch import check_url
from chinwag.yaml_files import ErrorFactory, YamlDocument, read_yaml

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
SUFFIXES = (".yaml", ".yml")


def parse_duration(value: Any) -> Any:
    """A duration in seconds: a number of seconds, or a string of a number and a unit
    (``"90s"``, ``"10m"``, ``"1h"``, ``"1d"``; no unit: seconds).

    Returns:
        Seconds as a float; any other value unchanged (left for pydantic to refuse).

    Raises:
        PydanticCustomError: a string that is not a duration, or a boolean.
    """
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "a duration is a number of seconds or a string")
    if not isinstance(value, str):
        return value
    match = DURATION.match(value)
    if match is None:
        raise PydanticCustomError(
            "duration", "{value} is not a duration: give seconds, or a number with s, m, h "
                        "or d (90s, 10m, 1h, 1d)", {"value": repr(value)})
    return float(match.group(1)) * UNITS[(match.group(2) or "s").lower()]


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, allow_inf_nan=False)]


class Source(BaseModel):
    """A knowledge source (see the module docstring for a file).

    Attributes:
        name: its name (letters, digits, ``_``, ``.``, ``-``).
        kind: ``page`` (the text of a web page), ``feed`` (RSS, Atom, JSON Feed items) or
            ``collection`` (a fact collection, searched for the question).
        url: what is fetched (``page``, ``feed``; refused for a collection).
        collection: the fact collection's name (``collection`` only).
        describe: the sentence put before the content ("Today's weather in Limbo:").
        triggers: words or short phrases of a question that call for this source (whole
            words, any case); none: the source is used for every question.
        max_items: most feed items kept (>= 1).
        refresh: seconds a fetched copy is used before it is fetched again (>= 0; 0: every
            time). Files and bodies may give ``"90s"``, ``"10m"``, ``"1h"``, ``"1d"``.
        budget_tokens: most prompt tokens its content may take (>= 16).

    Raises (at construction):
        pydantic.ValidationError: a missing or unknown field, a bad name, a URL ``fetch``
            would refuse, a URL or collection that the kind does not take, a bad duration.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=100)
    kind: Literal["page", "feed", "collection"]
    url: str | None = Field(None, validate_default=True)
    collection: str | None = Field(None, validate_default=True)
    describe: str = ""
    triggers: tuple[str, ...] = ()
    max_items: int = Field(10, ge=1)
    refresh: Seconds = 600.0
    budget_tokens: int = Field(400, ge=16)

    @field_validator("url")
    @classmethod
    def _url_for_pages_and_feeds(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself is wrong: reported there
            return value
        if kind == "collection":
            if value is not None:
                raise PydanticCustomError("source", "a collection source has no url")
            return value
        if value is None:
            raise PydanticCustomError("source", "a {kind} source needs a url", {"kind": kind})
        try:
            check_url(value)
        except FetchError as e:
            raise PydanticCustomError("source", "{why}", {"why": str(e)}) from None
        return value

    @field_validator("collection")
    @classmethod
    def _collection_for_collections(cls, value: str | None,
                                    info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "collection" and not (value or "").strip():
            raise PydanticCustomError("source", "a collection source names its collection")
        if kind in ("page", "feed") and value is not None:
            raise PydanticCustomError("source", "only a collection source names a collection")
        return value

    @field_validator("triggers")
    @classmethod
    def _no_empty_triggers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(" ".join(t.split()) for t in value)
        if any(not t for t in cleaned):
            raise PydanticCustomError("source", "a trigger is empty")
        return cleaned

    def definition(self) -> dict[str, Any]:
        """Its fields as plain data (JSON or YAML), without ``name`` and the absent
        ``url``/``collection``; whole seconds of ``refresh`` as an int."""
        data = self.model_dump(mode="json", exclude={"name"})
        for key in ("url", "collection"):
            if data[key] is None:
                del data[key]
        if float(data["refresh"]).is_integer():
            data["refresh"] = int(data["refresh"])
        return data

    def to_yaml(self) -> str:
        """Its file's text (the name is the file's name; see ``definition``)."""
        return yaml.safe_dump(self.definition(), sort_keys=False, allow_unicode=True,
                              default_flow_style=None, width=100)


def _validated(document: YamlDocument, name: str, fail: ErrorFactory,
               top_line: int | None) -> Source:
    """``document``'s data as a Source named ``name`` unless it names itself.

    Raises:
        SourceError: (what ``fail`` builds) not a mapping (at ``top_line``), or an invalid
            field (at its key's line).
    """
    named = document.named(name, fail, "a source must be a mapping (kind: ..., url: ...)",
                           top_line)
    return named.validate(Source.model_validate, fail)


def source_from(data: Any, *, name: str, where: str) -> Source:
    """A source sent as data (a JSON body), named by ``name`` (the body's own ``name``, if
    any, must be the same).

    Args:
        data: the fields, a mapping.
        name: the name it is given (``PUT /sources/{name}``'s).
        where: how errors name it (``PUT /sources/news``).

    Raises:
        SourceError: not a mapping, another name, or an invalid field, as
            ``WHERE: field: problem``.
    """
    def fail(message: str, line: int | None) -> SourceError:
        return SourceError(message, path=where, line=line)

    if isinstance(data, dict) and "name" in data and data["name"] != name:
        raise fail(f"name: {data['name']!r} is not the name in the path ({name!r})", None)
    return _validated(YamlDocument(data, {}), name, fail, None)


def load_source_file(path: Path) -> Source:
    """Read one source YAML file (its ``name`` defaults to the file's stem).

    Raises:
        SourceError: an unreadable file, broken YAML (with its line), or an invalid source
            (``weather.yaml:3: refresh: ...``: the field and the line of its key).
    """
    def fail(message: str, line: int | None) -> SourceError:
        return SourceError(message, path=str(path), line=line)

    return _validated(read_yaml(path, fail, "source"), path.stem, fail, 1)


def source_paths(folder: Path) -> list[Path]:
    """The source files of ``folder`` (``*.yaml`` and ``*.yml``), sorted; none for a
    missing folder.

    Raises:
        SourceError: ``folder`` is not a folder.
    """
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise SourceError("the sources path is not a folder", path=str(folder))
    return sorted(p for suffix in SUFFIXES for p in folder.glob(f"*{suffix}") if p.is_file())


def source_files(folder: Path) -> dict[str, tuple[Source, Path]]:
    """Every source of ``folder`` with the file it came from, by name (sorted).

    Raises:
        SourceError: a file that cannot be loaded, two files defining one name, or a
            ``folder`` that is a file (a missing folder is no error: no sources).
    """
    found: dict[str, tuple[Source, Path]] = {}
    for path in source_paths(folder):
        source = load_source_file(path)
        if source.name in found:
            raise SourceError(f"source {source.name!r} is defined here and in "
                              f"{found[source.name][1]}", path=str(path))
        found[source.name] = (source, path)
    return dict(sorted(found.items()))


class SourceRegistry:
    """The sources of one folder, read at construction, changed through ``put``/``delete``
    (which write the folder) and ``reload``. Thread-safe.

    Args:
        folder: the sources folder (``Settings.user_sources_dir()``); it may not exist yet.

    Raises (at construction):
        SourceError: what ``source_files`` raises.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._found = source_files(folder)

    def all(self) -> dict[str, Source]:
        """Every source by name, sorted (a copy)."""
        with self._lock:
            return {name: source for name, (source, _) in sorted(self._found.items())}

    def files(self) -> dict[str, tuple[Source, Path]]:
        """Every source with its file, by name, sorted (a copy, taken at once)."""
        with self._lock:
            return dict(sorted(self._found.items()))

    def get(self, name: str) -> Source:
        """The source called ``name``.

        Raises:
            UnknownSource: no such source (the error lists the known ones).
        """
        with self._lock:
            return self._entry(name)[0]

    def path_of(self, name: str) -> Path:
        """The file the source ``name`` lives in.

        Raises:
            UnknownSource: no such source.
        """
        with self._lock:
            return self._entry(name)[1]

    def put(self, source: Source) -> bool:
        """Add or replace a source, writing ``folder/NAME.yaml`` atomically (a temporary
        file in the folder, then renamed over it); the folder is created if need be. A file
        of another name that held the source (``NAME.yml``) is removed.

        Returns:
            True when the source is new, False when it replaced one.

        Raises:
            SourceError: the file cannot be written, or ``NAME.yaml`` holds another source.
        """
        target = self.folder / f"{source.name}.yaml"
        with self._lock:
            old = self._found.get(source.name)
            for other, (_, path) in self._found.items():
                if path == target and other != source.name:
                    raise SourceError(f"the file holds source {other!r}; cannot write "
                                      f"{source.name!r} there", path=str(target))
            _write_atomically(target, source.to_yaml())
            if old is not None and old[1] != target:
                try:
                    old[1].unlink(missing_ok=True)
                except OSError as e:
                    raise SourceError(f"cannot remove the old file: {e.strerror}",
                                      path=str(old[1])) from None
            self._found[source.name] = (source, target)
            return old is None

    def delete(self, name: str) -> None:
        """Remove the source ``name`` and its file.

        Raises:
            UnknownSource: no such source.
            SourceError: the file cannot be removed.
        """
        with self._lock:
            _, path = self._entry(name)
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                raise SourceError(f"cannot remove the file: {e.strerror}",
                                  path=str(path)) from None
            del self._found[name]

    def reload(self) -> dict[str, Source]:
        """Read the folder again (after files were edited by hand).

        Returns:
            Every source by name, sorted, as ``all``.

        Raises:
            SourceError: what ``source_files`` raises; the sources held before are kept.
        """
        with self._lock:
            self._found = source_files(self.folder)
            return {name: source for name, (source, _) in self._found.items()}

    def _entry(self, name: str) -> tuple[Source, Path]:
        if name not in self._found:
            raise UnknownSource(name, sorted(self._found))
        return self._found[name]


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` by a temporary file in its folder and a rename, so
    a reader sees the old file or the new one, never half of one.

    Raises:
        SourceError: the folder cannot be made or the file written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    except OSError as e:
        raise SourceError(f"cannot write the sources folder: {e.strerror}",
                          path=str(path.parent)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as e:
        Path(temp).unlink(missing_ok=True)
        raise SourceError(f"cannot write source file: {e.strerror}", path=str(path)) from None


def _trigger_pattern(trigger: str) -> re.Pattern[str]:
    """A trigger as a regular expression: its words in order, any space between them, not
    inside a longer word."""
    words = r"\s+".join(re.escape(word) for word in trigger.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def triggered(question: str, sources: Sequence[Source]) -> list[Source]:
    """The sources ``question`` calls for, in their order: those with a trigger found in it
    (any case, whole words: "rain" is in "Will it rain?" but not in "brain"; a phrase as a
    phrase) and those with no triggers at all (always used)."""
    def hit(source: Source) -> bool:
        return not source.triggers or any(_trigger_pattern(t).search(question)
                                          for t in source.triggers)

    return [source for source in sources if hit(source)]

