"""Personas: who the chatbot is. Loaded from YAML; built-ins ship in ``chinwag/personas/``.

A persona file::

    name: villager                 # the id used on the command line (--persona villager)
    character: Bertha              # {name} in the prompt, the speaker in a transcript
    description: an old villager of Limbo
    location: the village of Limbo
    user_name: Traveller           # how the transcript names the person talking ({user})
    system_prompt: |
      You are {name}, {description}, in {location}. You are talking with {user}.
    examples:                      # example exchanges, sent before the conversation
      - user: Hello!
        assistant: Well met, traveller!
    sampling: {temperature: 0.7, max_tokens: 80}
    chat_format: null              # a named format for models without a template
    llm: null                      # the LLM config it runs on (a name or a file; chinwag llms)
    greeting: Well met, traveller!
    memory:                        # what of the conversation is sent each turn
      policy: summary              # window (default) | token_budget | summary
      window: 25                   # messages sent at most (window, summary)
    facts:                         # pinned facts, always sent with the system prompt
      - Bertha's goat is called Moss.
    sources: [weather]             # knowledge sources it may use (names, or inline
                                   # definitions: knowledge.sources)
    context: {budget_tokens: 1000, on_source_error: skip}   # knowledge.policy
    knowledge: {collections: [village-lore], top_k: 4, budget_tokens: 800}
    thinking_lines:                # what an NPC shows while the model is slow (chinwag.npc)
      - "{name} ponders your words..."
    fallback_lines:                # what an NPC says when the model fails
      - "{name} looks at you blankly."

User files (``~/.config/chinwag/personas/*.yaml`` or ``--personas DIR``) override built-ins of
the same name.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    with_config,
)
from typing_extensions import TypedDict

from chinwag.chat.memory import MemoryPolicy, memory_system_text
from chinwag.errors import InvalidParams, PersonaError, UnknownPersona
from chinwag.knowledge.policy import CollectionsPolicy, ContextPolicy
from chinwag.knowledge.sources import Source
from chinwag.prompting.base import Speakers
from chinwag.types import ContextPiece, Message, SamplingParams
from chinwag.yaml_files import read_yaml

PLACEHOLDERS = ("name", "description", "location", "user")
DEFAULT_THINKING_LINES = ("{name} ponders your words...", "{name} is still thinking...")
DEFAULT_FALLBACK_LINES = ("{name} looks at you blankly, lost in thought.",)


def _in_range(name: str) -> AfterValidator:
    """Check one sampling value as ``SamplingParams`` does, so a value out of range is
    reported at its own key (``sampling.temperature``)."""
    def check(value: Any) -> Any:
        try:
            SamplingParams().with_(**{name: value})
        except InvalidParams as e:
            raise ValueError(str(e)) from None
        return value

    return AfterValidator(check)


def _sampling_settings() -> Any:
    """The type of a persona's ``sampling``: a TypedDict of ``SamplingParams``' own fields,
    made from them (a new field is written once, there), each strictly typed and checked as
    ``SamplingParams`` checks it, so a bad value is reported at its own key's line. ``stop``
    also takes a list, as YAML writes one."""
    hints: dict[str, Any] = get_type_hints(SamplingParams)
    hints["stop"] = str | list[str]
    fields = {f.name: Annotated[hints[f.name], _in_range(f.name)]
              for f in dataclasses.fields(SamplingParams)}
    settings = TypedDict("SamplingSettings", fields, total=False)  # type: ignore[misc]
    return with_config(ConfigDict(extra="forbid", strict=True))(settings)


if TYPE_CHECKING:
    SamplingSettings = dict[str, Any]
else:
    SamplingSettings = _sampling_settings()


class Example(BaseModel):
    """One example exchange: what the user says and how the persona answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    user: str
    assistant: str


class Persona(BaseModel):
    """A chatbot's identity, prompt, examples and sampling settings (see the module docstring).

    Raises (at construction):
        pydantic.ValidationError: a missing name, a field of the wrong type, an unknown field,
            a placeholder other than {name}, {description}, {location}, {user}, or a sampling
            value out of range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    character: str | None = None
    description: str = ""
    location: str = ""
    user_name: str = "User"
    system_prompt: str = "You are {name}, {description}."
    examples: tuple[Example, ...] = ()
    sampling: SamplingSettings = Field(default_factory=lambda: SamplingSettings())
    chat_format: str | None = None
    llm: str | None = None
    greeting: str | None = None
    memory: MemoryPolicy = Field(default_factory=lambda: MemoryPolicy())
    facts: tuple[str, ...] = ()
    sources: tuple[str | Source, ...] = ()
    context: ContextPolicy = Field(default_factory=lambda: ContextPolicy())
    knowledge: CollectionsPolicy = Field(default_factory=lambda: CollectionsPolicy())
    thinking_lines: tuple[str, ...] = DEFAULT_THINKING_LINES
    fallback_lines: tuple[str, ...] = Field(default=DEFAULT_FALLBACK_LINES, min_length=1)

    @field_validator("system_prompt")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        return _check_placeholders(value)

    @field_validator("thinking_lines", "fallback_lines")
    @classmethod
    def _known_placeholders_in_lines(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for line in value:
            _check_placeholders(line)
        return value

    @property
    def display_name(self) -> str:
        """The character's name: ``character``, else the persona name capitalised."""
        return self.character or self.name.replace("_", " ").replace("-", " ").title()

    def speakers(self, user: str | None = None) -> Speakers:
        """Names for a transcript: the character and the person (``user`` or ``user_name``)."""
        return Speakers(assistant=self.display_name, user=user or self.user_name)

    def system_text(self, user: str | None = None) -> str:
        """The system prompt with its placeholders filled in."""
        return self.fill(self.system_prompt, user)

    def fill(self, template: str, user: str | None = None) -> str:
        """``template`` (the system prompt, a thinking or fallback line) with {name},
        {description}, {location} and {user} filled in."""
        return template.format(name=self.display_name, description=self.description,
                               location=self.location, user=user or self.user_name)

    def preamble(self, user: str | None = None, *, summary: str = "",
                 facts: Sequence[str] = (), context: Sequence[ContextPiece] = ()
                 ) -> list[Message]:
        """System prompt and example exchanges, as messages (always sent, never trimmed).

        Args:
            summary: the running summary of what fell out of the conversation's window,
                added to the system prompt (see ``chat.memory``).
            facts: user-level pinned facts, sent after the persona's own ``facts``.
            context: knowledge for the conversation (pages, feeds, collection chunks),
                sent after the facts.
        """
        system = memory_system_text(self.system_text(user), summary=summary,
                                    facts=[*self.facts, *facts], context=context)
        messages = [Message("system", system)]
        for ex in self.examples:
            messages += [Message("user", ex.user), Message("assistant", ex.assistant)]
        return messages

    def sampling_params(self, base: SamplingParams | None = None) -> SamplingParams:
        """``base`` (default: chinwag's defaults) with this persona's sampling settings on top."""
        return (base or SamplingParams()).with_(**self.sampling)


def _check_placeholders(value: str) -> str:
    for _, field, _, _ in string.Formatter().parse(value):
        if field is not None and field not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{field}}}; use "
                             + ", ".join("{" + p + "}" for p in PLACEHOLDERS))
    return value


def load_persona_file(path: Path) -> Persona:
    """Read one persona YAML file (its ``name`` defaults to the file's stem).

    Raises:
        PersonaError: unreadable file, broken YAML (with its line), or an invalid persona
            (with the field's dotted path, the problem and the line of that very key, e.g.
            ``villager.yaml:14: sampling.temperature: Input should be a valid number``).
    """
    def fail(message: str, line: int | None) -> PersonaError:
        return PersonaError(message, path=str(path), line=line)

    document = read_yaml(path, fail, "persona").named(
        path.stem, fail, "a persona file must be a mapping (name: ..., system_prompt: ...)")
    return document.validate(Persona.model_validate, fail)


def builtin_personas_dir() -> Path:
    """The folder of the personas that ship with chinwag."""
    return Path(str(files("chinwag").joinpath("personas")))


def persona_files(user_dir: Path | None = None) -> dict[str, tuple[Persona, Path]]:
    """Every persona with the file it came from: built-ins, then the YAML files of
    ``user_dir`` (overriding by name).

    Raises:
        PersonaError: a file that cannot be loaded, or a ``user_dir`` that is a file (a
            missing ``user_dir`` is not an error: there are no user personas yet).
    """
    found: dict[str, tuple[Persona, Path]] = {}
    for folder in (builtin_personas_dir(), user_dir):
        if folder is None or not folder.exists():
            continue
        if not folder.is_dir():
            raise PersonaError("the personas path is not a folder", path=str(folder))
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            persona = load_persona_file(path)
            found[persona.name] = (persona, path)
    return found


def load_personas(user_dir: Path | None = None) -> dict[str, Persona]:
    """Every persona by name (see ``persona_files``). Raises what ``persona_files`` raises."""
    return {name: persona for name, (persona, _) in persona_files(user_dir).items()}


def get_persona(name: str, user_dir: Path | None = None) -> Persona:
    """The persona called ``name``.

    Raises:
        UnknownPersona: no persona has that name (the error lists the known ones).
        PersonaError: a persona file cannot be loaded.
    """
    personas = load_personas(user_dir)
    if name not in personas:
        raise UnknownPersona(name, sorted(personas))
    return personas[name]
