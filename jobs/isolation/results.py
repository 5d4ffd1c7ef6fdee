"""What a processor's result must be before it is stored: storable by PostgreSQL, and bounded.

jsonb cannot hold U+0000, and a lone UTF-16 surrogate is not UTF-8 at all. Such a value is
the input's doing (a NUL in a CSV header, say), so it is a permanent failure, code
`invalid_result`, with a message naming where in the result it is: rewriting the
processor's values behind its back would report data the input does not hold.

Bounded: a string longer than JOB_RESULT_MAX_STRING_CHARS is cut, with a marker, and a
result whose JSON is over JOB_RESULT_MAX_BYTES is replaced by a marker object; the full
result stays in the job's result.json.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from jobs.storable import unstorable_reason
from processors.base import ProcessorError

TRUNCATED = "…[truncated {n} characters]"


def check_storable(result: Any) -> None:
    reason = unstorable_reason(result, "result")
    if reason:
        raise ProcessorError(f"The result cannot be stored: {reason}, which the database does not accept",
                             code="invalid_result")


def storable_text(text: str) -> str:
    """Text for an error message: NULs and lone surrogates replaced, so recording the failure cannot fail."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def bounded(result: Any) -> Any:
    """The result as the job row keeps it: long strings cut, the whole capped."""
    limit = settings.JOB_RESULT_MAX_STRING_CHARS
    cut = _cut_strings(result, limit)
    size = len(json.dumps(cut, separators=(",", ":")).encode())
    if size > settings.JOB_RESULT_MAX_BYTES:
        return {"truncated": True, "result_bytes": size, "max_bytes": settings.JOB_RESULT_MAX_BYTES,
                "note": "the result is larger than JOB_RESULT_MAX_BYTES; the full result is in result.json"}
    return cut


def _cut_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + TRUNCATED.format(n=len(value) - limit)
    if isinstance(value, dict):
        return {_cut_strings(k, limit) if isinstance(k, str) else k: _cut_strings(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut_strings(item, limit) for item in value]
    return value
