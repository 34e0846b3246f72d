"""A stored conversation as Markdown (``GET /conversations/{id}?format=markdown``, the web
page's "Export Markdown"): a heading, who talked with whom, then each message under its
speaker's name, the model and sources of each reply beneath it."""

from __future__ import annotations

import datetime
from typing import Any


def conversation_markdown(document: dict[str, Any], *, character: str | None = None,
                          user_name: str | None = None) -> str:
    """Markdown text of an export document (``Store.export_conversation``).

    Args:
        document: the export (``heading``, ``persona``, ``user``, ``messages``...).
        character: the persona's character name for its replies (default: the persona's
            name).
        user_name: the name the user's messages go under (default: the conversation's
            user, else "User").

    Returns:
        The text, ending with a newline. A message cut short is marked "(stopped)"; lines
        the persona overheard (``system`` messages) are quoted as such.
    """
    speaker = character or str(document.get("persona", "Assistant"))
    person = user_name or document.get("user") or "User"
    heading = document.get("heading") or document.get("title") or "Conversation"
    created = datetime.datetime.fromtimestamp(float(document.get("created_at", 0)),
                                              tz=datetime.UTC)
    lines = [f"# {heading}", "",
             f"{person} with {document.get('persona', '?')}, "
             f"started {created:%Y-%m-%d %H:%M} UTC", ""]
    for message in document.get("messages", []):
        role = message.get("role")
        name = speaker if role == "assistant" else person if role == "user" else "Overheard"
        stopped = "" if message.get("complete", True) or role != "assistant" else " (stopped)"
        lines += [f"**{name}**{stopped}:", ""]
        content = str(message.get("content", ""))
        lines += ([f"> {line}" for line in content.splitlines()] if role == "system"
                  else [content])
        notes = []
        if role == "assistant" and message.get("model"):
            notes.append(f"model: {message['model']}")
        for source in message.get("sources") or []:
            label = source.get("title") or source.get("name") or source.get("url") or "source"
            notes.append(f"source: [{label}]({source['url']})" if source.get("url")
                         else f"source: {label}")
        if notes:
            lines += ["", *(f"<sub>{note}</sub>  " for note in notes)]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
