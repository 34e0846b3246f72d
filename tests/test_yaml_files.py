"""The one YAML loader: key lines however deeply nested, syntax errors, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from chinwag.backends.config import load_llm_config
from chinwag.errors import ConfigError
from chinwag.yaml_files import located, parse_yaml, read_yaml

FAIL = located(ConfigError, Path("f.yaml"))


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str
    assistant: str


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    limits: dict[str, int] = {}
    items: list[Item] = []


def test_every_key_and_item_has_its_own_line() -> None:
    doc = parse_yaml("name: x\nlimits:\n  a: 1\n  b: 2\nitems:\n  - user: hi\n"
                     "    assistant: ho\n", FAIL)
    assert doc.data == {"name": "x", "limits": {"a": 1, "b": 2},
                        "items": [{"user": "hi", "assistant": "ho"}]}
    assert doc.lines[("limits", "b")] == 4
    assert doc.lines[("items", 0)] == 6
    assert doc.lines[("items", 0, "assistant")] == 7


def test_a_missing_key_points_at_the_mapping_it_is_missing_from() -> None:
    doc = parse_yaml("name: x\nitems:\n  - user: hi\n    assistant: ho\n  - user: bye\n", FAIL)
    assert doc.line_of(("items", 1, "assistant")) == 5
    assert doc.line_of(("nothing",)) is None  # the top level has no line


def test_validation_error_names_the_dotted_path_and_the_nested_line() -> None:
    doc = parse_yaml("name: x\nlimits:\n  a: 1\n  b: many\n", FAIL)
    with pytest.raises(ConfigError) as err:
        doc.validate(Doc.model_validate, FAIL)
    assert str(err.value) == ("f.yaml:4: limits.b: Input should be a valid integer, "
                              "unable to parse string as an integer")


def test_several_problems_say_how_many_more() -> None:
    doc = parse_yaml("limits: {a: x, b: y}\n", FAIL)
    with pytest.raises(ConfigError, match=r"^f\.yaml: name: Field required \(and 2 more\)$"):
        doc.validate(Doc.model_validate, FAIL)


def test_syntax_error_names_its_line() -> None:
    with pytest.raises(ConfigError, match=r"^f\.yaml:3: not valid YAML: expected ',' or ']'"):
        parse_yaml("name: x\nitems: [a, b\nlimits: {}\n", FAIL)


def test_python_tags_are_refused_by_the_safe_loader() -> None:
    with pytest.raises(ConfigError, match=r"f\.yaml:1: not valid YAML: could not determine"):
        parse_yaml("name: !!python/object/apply:os.system [echo hi]\n", FAIL)


def test_an_alias_to_its_own_parent_does_not_loop() -> None:
    doc = parse_yaml("items: &loop\n  - *loop\n", FAIL)
    assert doc.lines[("items",)] == 1 and ("items", 0) in doc.lines


def test_an_empty_file_is_none_with_no_lines() -> None:
    doc = parse_yaml("# only a comment\n", FAIL)
    assert doc.data is None and not doc.lines


def test_an_unreadable_file_is_left_to_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_yaml(tmp_path / "nope.yaml", FAIL)


# -- LLM configs load through it too ---------------------------------------------------------

def test_llm_config_nested_error_names_the_nested_key_line(tmp_path: Path) -> None:
    path = tmp_path / "remote.yaml"
    path.write_text("backend: openai\nmodel_id: m\nbase_url: http://x/v1\nheaders:\n"
                    "  X-Team: chat\n  X-Retries: 3\n")
    with pytest.raises(ConfigError) as err:
        load_llm_config(path)
    assert str(err.value).startswith(
        f"{path}:6: headers.X-Retries: Input should be a valid string")


def test_llm_config_missing_field_of_a_backend_has_no_line_and_no_tag(tmp_path: Path) -> None:
    path = tmp_path / "remote.yaml"
    path.write_text("backend: openai\nmodel_id: m\n")
    with pytest.raises(ConfigError) as err:
        load_llm_config(path)
    assert str(err.value) == f"{path}: base_url: Field required"


def test_llm_config_unknown_backend_points_at_backend(tmp_path: Path) -> None:
    path = tmp_path / "remote.yaml"
    path.write_text("# mine\nbackend: gpt5\n")
    with pytest.raises(ConfigError, match=r"remote\.yaml:2: backend: Input tag 'gpt5'"):
        load_llm_config(path)
