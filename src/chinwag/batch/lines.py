"""The lines of a batch input file.

Each line is OpenAI's batch request format (also what vLLM's ``run-batch`` reads)::

    {"custom_id": "t-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

with ``url`` one of ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` and the
body exactly as that endpoint takes it; or the short form for a persona and a JSON Schema::

    {"custom_id": "t-2", "persona": "assistant", "prompt": "...", "schema": {...}}

A line that cannot be run (not JSON, no ``custom_id``, another method or URL, a ``custom_id``
seen before) becomes a ``LineError`` and never stops the others. A body without ``seed`` gets
one derived from its ``custom_id``, so running the file again gives the same text.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

URLS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


@dataclass(frozen=True)
class BatchLine:
    """One request to run.

    Attributes:
        custom_id: the caller's id, echoed in the output.
        line: its line number in the input file, from 1.
        url: the endpoint (one of ``URLS``).
        body: the request body, with a ``seed`` (see ``seed_for``).
    """

    custom_id: str
    line: int
    url: str
    body: dict[str, Any]


@dataclass(frozen=True)
class LineError:
    """A line that failed: written to the error file as ``{"id", "custom_id", "line",
    "response", "error": {"code", "message"}}``: OpenAI's batch output line (``response``
    holds the endpoint's error answer, ``{"status_code", "request_id", "body"}``, or null for
    a line that never reached it) with the line number added.

    Attributes:
        custom_id: the line's id, or None when it has none.
        line: its line number in the input file, from 1.
        code: ``invalid_json``, ``missing_custom_id``, ``invalid_line``,
            ``duplicate_custom_id``, ``endpoint_mismatch``, ``batch_expired``, or the
            endpoint's error code.
        message: what is wrong.
        response: the endpoint's answer, when it gave one.
    """

    custom_id: str | None
    line: int
    code: str
    message: str
    response: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The error file's JSON object."""
        return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": self.custom_id,
                "line": self.line, "response": self.response,
                "error": {"code": self.code, "message": self.message}}


def seed_for(custom_id: str) -> int:
    """A seed from ``custom_id``: the first 31 bits of its SHA-256 (the same id always gives
    the same seed, on any machine)."""
    return int.from_bytes(hashlib.sha256(custom_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


def _short_form(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The chat completions body of a short-form line (a persona, a prompt, a schema)."""
    persona, prompt = data.get("persona"), data.get("prompt")
    if not isinstance(persona, str) or not isinstance(prompt, str) or not prompt:
        raise ValueError("a short-form line needs 'persona' and 'prompt' (strings)")
    body: dict[str, Any] = {"model": persona,
                            "messages": [{"role": "user", "content": prompt}]}
    schema = data.get("schema")
    if schema is not None:
        if not isinstance(schema, dict):
            raise ValueError("'schema' must be a JSON Schema object")
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "output", "schema": schema}}
    for key in ("max_tokens", "temperature", "top_p", "top_k", "seed"):
        if key in data:
            body[key] = data[key]
    return "/v1/chat/completions", body


def _parse(text: str, number: int) -> BatchLine:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a line must be a JSON object")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise KeyError("custom_id")
    url: str
    body: dict[str, Any]
    if "persona" in data or "prompt" in data:
        url, body = _short_form(data)
    else:
        method, given, raw = data.get("method", "POST"), data.get("url"), data.get("body")
        if method != "POST":
            raise ValueError(f"method must be POST, not {method!r}")
        if given not in URLS:
            raise ValueError(f"url must be one of {', '.join(URLS)}, not {given!r}")
        if not isinstance(raw, dict):
            raise ValueError("'body' must be a JSON object")
        url, body = str(given), raw
    if url != "/v1/embeddings" and body.get("seed") is None:
        body = {**body, "seed": seed_for(custom_id)}
    return BatchLine(custom_id, number, url, body)


def read_batch(path: Path) -> tuple[list[BatchLine], list[LineError]]:
    """The runnable lines of a batch file and the errors of the others, in file order
    (blank lines are skipped).

    Raises:
        OSError: the file cannot be read.
        UnicodeDecodeError: it is not UTF-8.
    """
    lines: list[BatchLine] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                parsed = _parse(text, number)
            except json.JSONDecodeError as e:
                errors.append(LineError(None, number, "invalid_json", f"not JSON: {e}"))
                continue
            except KeyError:
                errors.append(LineError(None, number, "missing_custom_id",
                                        "the line has no 'custom_id' (a non-empty string)"))
                continue
            except ValueError as e:
                errors.append(LineError(_id_of(text), number, "invalid_line", str(e)))
                continue
            if parsed.custom_id in seen:
                errors.append(LineError(parsed.custom_id, number, "duplicate_custom_id",
                                        f"custom_id {parsed.custom_id!r} was used on an "
                                        "earlier line"))
                continue
            seen.add(parsed.custom_id)
            lines.append(parsed)
    return lines, errors


def _id_of(text: str) -> str | None:
    try:
        found = json.loads(text).get("custom_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None
