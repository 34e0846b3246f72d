"""``chinwag complete``: stream a raw continuation of a text (a playground for base models)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from chinwag.cli.common import (
    ConfigOpt,
    LlmOpt,
    MinPOpt,
    ModelOpt,
    NBatchOpt,
    NCtxOpt,
    RepeatPenaltyOpt,
    SeedOpt,
    TemperatureOpt,
    ThreadsOpt,
    TopKOpt,
    TopPOpt,
    friendly_errors,
    open_backend,
    sampling_flags,
    sampling_option,
    settings_from,
)
from chinwag.errors import ConfigError
from chinwag.types import Done, SamplingParams

MAX_TOKENS = 128
"""``complete``'s own default for ``--max-tokens`` (a playground wants short answers)."""


@friendly_errors
def complete(
    text: Annotated[str, typer.Argument(help="The text to continue ('-' reads stdin).")],
    model: ModelOpt = None, llm: LlmOpt = None, n_ctx: NCtxOpt = None, n_batch: NBatchOpt = None,
    threads: ThreadsOpt = None, config: ConfigOpt = None,
    max_tokens: Annotated[int, sampling_option(
        "max_tokens", "--max-tokens", "-n", default=MAX_TOKENS)] = MAX_TOKENS,
    temperature: TemperatureOpt = None,
    top_k: TopKOpt = None, top_p: TopPOpt = None, min_p: MinPOpt = None,
    repeat_penalty: RepeatPenaltyOpt = None, seed: SeedOpt = None,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="Stop string (repeatable).")]
    = None,
    json_schema: Annotated[Path | None, typer.Option(
        "--json-schema", help="JSON Schema file: the output is JSON valid against it.")] = None,
) -> None:
    """Stream a raw continuation of TEXT, token by token."""
    prompt = sys.stdin.read() if text == "-" else text
    schema = None
    if json_schema is not None:
        try:
            schema = json.loads(json_schema.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read JSON Schema {json_schema}: {e}") from None
    params = SamplingParams().with_(**sampling_flags(
        max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
        repeat_penalty=repeat_penalty, seed=seed, stop=tuple(stop) if stop else None,
        json_schema=schema))
    backend = open_backend(settings_from(config, model=model, llm=llm, n_ctx=n_ctx,
                                         n_batch=n_batch, n_threads=threads, parallel=1))
    events = backend.generate(prompt, params)
    try:
        for event in events:
            if isinstance(event, Done):
                break
            sys.stdout.write(event.text)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        events.close()  # type: ignore[attr-defined]
        sys.stdout.write("\n")
        sys.stdout.flush()
