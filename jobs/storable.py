"""What PostgreSQL can store in text and jsonb: no U+0000, and no lone UTF-16 surrogate
(not UTF-8 at all). Requests, params and results are checked against it before a write,
so that such a value is the caller's 400 or the job's failure, never a database error."""

from __future__ import annotations

from typing import Any


def text_problem(text: str, where: str) -> str | None:
    """Why `text` cannot be stored ("<where> contains ..."), or None if it can."""
    if "\x00" in text:
        return f"{where} contains a NUL character (U+0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where} contains a lone UTF-16 surrogate"
    return None


def unstorable_reason(value: Any, path: str = "value") -> str | None:
    """Where and why a JSON-like value cannot be stored, or None if it can."""
    if isinstance(value, str):
        return text_problem(value, path)
    if isinstance(value, dict):
        for key, item in value.items():
            reason = (text_problem(key, f"{path} key {key[:40]!r}") if isinstance(key, str) else None) or \
                unstorable_reason(item, f"{path}.{str(key)[:40]}")
            if reason:
                return reason
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            reason = unstorable_reason(item, f"{path}[{index}]")
            if reason:
                return reason
    return None
