"""ClassAd literals as text, both ways: how a worker writes its ad in `join` lines
and how the scheduler reads it back and shows it in /nodes/NAME/ad."""

from __future__ import annotations

from typing import Any


def literal(value: Any) -> str:
    """A ClassAd literal for a Python value: true/false, a number, or a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def parse_literal(text: str) -> Any:
    """The value of a literal: integer, real, boolean, "quoted string" (escapes
    undone); any other text is taken as a string, as typed on a command line."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text
