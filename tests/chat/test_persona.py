from pathlib import Path

import pytest

from chinwag.chat.persona import (
    SamplingSettings,
    get_persona,
    load_persona_file,
    load_personas,
)
from chinwag.errors import PersonaError, UnknownPersona
from chinwag.types import Message, SamplingParams


def test_builtins_ship_with_the_package() -> None:
    personas = load_personas()
    assert {"assistant", "villager", "pogi"} <= set(personas)
    villager = personas["villager"]
    assert villager.display_name == "Bertha"
    assert "Limbo" in villager.system_text()


def test_system_prompt_placeholders_are_filled() -> None:
    villager = get_persona("villager")
    text = villager.system_text(user="Alice")
    assert "Bertha" in text and "Alice" in text and "{" not in text


def test_preamble_is_system_then_example_pairs() -> None:
    pogi = get_persona("pogi")
    preamble = pogi.preamble()
    assert preamble[0].role == "system"
    assert [m.role for m in preamble[1:]] == ["user", "assistant"] * len(pogi.examples)
    assert preamble[1] == Message("user", pogi.examples[0].user)


def test_user_file_overrides_builtin_by_name(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        "name: villager\ncharacter: Gertrude\ndescription: a grumpy miller\n")
    assert get_persona("villager", tmp_path).display_name == "Gertrude"
    assert get_persona("pogi", tmp_path).display_name == "Pogi"


def test_unknown_persona_lists_the_known_ones() -> None:
    with pytest.raises(UnknownPersona) as err:
        get_persona("wizard")
    assert "wizard" in str(err.value)
    for name in ("assistant", "pogi", "villager"):
        assert name in str(err.value)


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\ndescription: fine\nexamples:\n"
                   "  - user: hi\n   assistant: [oops\n")
    with pytest.raises(PersonaError) as err:
        load_persona_file(bad)
    assert err.value.path == str(bad)
    assert err.value.line is not None and err.value.line >= 4
    assert f"{bad}:{err.value.line}" in str(err.value)


def test_invalid_field_names_field_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "hot.yaml"
    bad.write_text("name: hot\ndescription: too hot\nsampling:\n  temperature: -3\n")
    with pytest.raises(PersonaError) as err:
        load_persona_file(bad)
    assert "sampling.temperature" in str(err.value) and err.value.line == 4  # the key's own line


VILLAGER = """\
name: villager
character: Bertha
description: an old villager of Limbo
location: the village of Limbo
user_name: Traveller
system_prompt: |
  You are {name}, {description}, in {location}.
examples:
  - user: Hello!
    assistant: Well met, traveller!
greeting: Well met!
sampling:
  max_tokens: 80
  temperature: warm
"""


def test_nested_wrong_type_names_the_nested_key_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "villager.yaml"
    path.write_text(VILLAGER)
    with pytest.raises(PersonaError) as err:
        load_persona_file(path)
    assert str(err.value).startswith(
        f"{path}:14: sampling.temperature: Input should be a valid number")
    assert err.value.line == 14


def test_unknown_sampling_key_is_rejected_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nsampling:\n  max_tokens: 10\n  tempreture: 0.5\n")
    with pytest.raises(PersonaError, match=r"p\.yaml:4: sampling\.tempreture: Extra inputs"):
        load_persona_file(path)


def test_an_example_without_an_answer_points_at_that_example(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nexamples:\n  - user: Hi\n    assistant: Ho\n  - user: Bye\n")
    with pytest.raises(PersonaError,
                       match=r"p\.yaml:5: examples\.1\.assistant: Field required"):
        load_persona_file(path)


def test_sampling_settings_know_every_sampling_param() -> None:
    assert list(SamplingSettings.__annotations__) == SamplingParams.names()  # made from them


def test_sampling_settings_keep_the_values_given(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nsampling: {temperature: 0, stop: END, seed: 7}\n")
    persona = load_persona_file(path)
    params = persona.sampling_params()
    assert (params.temperature, params.stop, params.seed) == (0.0, ("END",), 7)
    assert params.top_k == SamplingParams().top_k  # what the file leaves out stays default


def test_an_unreadable_persona_file_is_a_persona_error(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="cannot read persona file"):
        load_persona_file(tmp_path)  # a folder


def test_unknown_placeholder_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: p\nsystem_prompt: You are {nmae}.\n")
    with pytest.raises(PersonaError, match="nmae"):
        load_persona_file(bad)


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: p\ntemperature: 0.5\n")
    with pytest.raises(PersonaError, match="temperature"):
        load_persona_file(bad)


def test_broken_user_file_breaks_loading_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "zzz.yaml").write_text("- just\n- a list\n")
    with pytest.raises(PersonaError, match=r"zzz\.yaml"):
        load_personas(tmp_path)


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    (tmp_path / "gus.yaml").write_text("description: a goose\n")
    assert get_persona("gus", tmp_path).display_name == "Gus"
