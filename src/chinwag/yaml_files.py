"""YAML files read one way, with the line of every key.

chinwag's settings file, personas and LLM configs all load through here, so a bad value is
reported alike everywhere: ``FILE:LINE: dotted.path: problem``, where LINE is the line of the
key itself however deeply it is nested (``villager.yaml:14: sampling.temperature: Input should
be a valid number``). The lines come from the node marks PyYAML gives while it parses; the
data from the same parse, through PyYAML's safe constructor.

Each caller keeps its own error class (``ConfigError``, ``PersonaError``) by handing in an
``ErrorFactory``: a function of a message and a line (or None) that returns the exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

T = TypeVar("T")
Key = str | int
KeyPath = tuple[Key, ...]
ErrorFactory = Callable[[str, int | None], Exception]


def located(error_class: Callable[[str], Exception], path: Path) -> ErrorFactory:
    """An ``ErrorFactory`` whose errors read ``PATH:LINE: message`` (``PATH: message`` when
    the line is unknown).

    Args:
        error_class: the exception to raise, built from one message string.
        path: the file, as it should appear in the message.
    """
    def make(message: str, line: int | None) -> Exception:
        return error_class(f"{path}:{line}: {message}" if line is not None
                           else f"{path}: {message}")

    return make


@dataclass(frozen=True)
class YamlDocument:
    """One parsed YAML file.

    Attributes:
        data: what ``yaml.safe_load`` gives for the file (None for an empty one).
        lines: the 1-based line of every key path: ``('sampling', 'temperature')`` is the line
            of the key ``temperature`` under ``sampling``, ``('examples', 2)`` the line where
            the third item of ``examples`` starts. The top level itself has no line.
    """

    data: Any
    lines: Mapping[KeyPath, int]

    def named(self, name: str, fail: ErrorFactory, not_mapping: str,
              line: int | None = 1) -> YamlDocument:
        """The document of one named thing (a persona, a source): a mapping whose ``name``
        defaults to ``name`` (a file's stem, a URL's path).

        Raises:
            Exception: what ``fail`` builds, with ``not_mapping`` at ``line``, when the data
                is not a mapping.
        """
        if not isinstance(self.data, dict):
            raise fail(not_mapping, line)
        return YamlDocument({"name": name, **self.data}, self.lines)

    def line_of(self, loc: Sequence[Key]) -> int | None:
        """The line of the deepest prefix of ``loc`` found in the file: the key's own line,
        or, for a key that is missing, the line of the mapping it is missing from (None at
        the top level)."""
        for end in range(len(loc), 0, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None

    def validate(self, validator: Callable[[Any], T], fail: ErrorFactory, *,
                 tag: str | None = None) -> T:
        """Validate ``data`` (a pydantic ``model_validate`` or ``TypeAdapter.validate_python``).

        Args:
            validator: turns the data into the result, raising ``pydantic.ValidationError``.
            fail: builds the exception raised for a validation error.
            tag: the discriminator of a top-level tagged union (an LLM config's ``backend``):
                pydantic puts the tag's value first in each error's location, which is
                dropped, and an error with no location (an unknown tag) is the tag's own.

        Raises:
            Exception: what ``fail`` builds, with ``dotted.path: pydantic's message`` (and
                ``(and N more)`` when there are several problems) and the line of the first
                problem.
        """
        try:
            return validator(self.data)
        except ValidationError as e:
            message, line = self.describe(e, tag=tag)
            raise fail(message, line) from None

    def describe(self, error: ValidationError, *, tag: str | None = None
                 ) -> tuple[str, int | None]:
        """The first problem of ``error`` as ``(message, line)``; see ``validate``."""
        problems = error.errors()
        first = problems[0]
        loc: list[Key] = list(first["loc"])
        if tag is not None:
            if loc and isinstance(self.data, dict) and loc[0] == str(self.data.get(tag)):
                loc = loc[1:]
            loc = loc or [tag]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        where = ".".join(str(p) for p in loc)
        message = f"{where}: {first['msg']}" if where else first["msg"]
        return message + more, self.line_of(loc)


def parse_yaml(text: str, fail: ErrorFactory) -> YamlDocument:
    """Parse YAML ``text`` with PyYAML's safe loader, keeping the line of every key.

    Raises:
        Exception: what ``fail`` builds for text that is not valid YAML:
            ``not valid YAML: problem``, with the problem's line when PyYAML knows it.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise fail(f"not valid YAML: {problem}",
                   mark.line + 1 if mark is not None else None) from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _collect_lines(node, (), lines, set())
    return YamlDocument(data, lines)


def read_yaml(path: Path, fail: ErrorFactory, what: str | None = None) -> YamlDocument:
    """Read and parse a YAML file (UTF-8); see ``parse_yaml``.

    Args:
        what: what the file holds (``persona``): a file that cannot be read is then what
            ``fail`` builds, ``cannot read persona file: No such file or directory``.

    Raises:
        OSError: the file cannot be read (missing, a folder, no permission), when ``what``
            is None (the caller words it).
        Exception: what ``fail`` builds for a file that is not valid YAML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        if what is None:
            raise
        raise fail(f"cannot read {what} file: {e.strerror}", None) from None
    return parse_yaml(text, fail)


def _collect_lines(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int],
                   open_nodes: set[int]) -> None:
    """Record the line of every key and item below ``node`` (an alias to a node that
    contains it is not followed again)."""
    if id(node) in open_nodes:
        return
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            lines[path] = key.start_mark.line + 1  # a repeated key: the last one counts
            _collect_lines(value, path, lines, open_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = (*prefix, index)
            lines[path] = item.start_mark.line + 1
            _collect_lines(item, path, lines, open_nodes)
    open_nodes.discard(id(node))
