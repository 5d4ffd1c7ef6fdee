"""The processor contract: what the job runner calls and what a processor may raise.

A processor is a plain function ``run(ctx) -> dict`` wrapped in a :class:`Processor`
record that also carries its parameter schema and time limits. Processors read
``ctx.input`` as a stream and write artifacts through ``ctx.open_output``; they never
see a local path, so the same code runs against any object store.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import jsonschema
from jsonschema.validators import validator_for


class ProcessorError(Exception):
    """Permanent: the input or params are bad. The job goes FAILED with this message; never retried."""

    def __init__(
        self, message: str, *, code: str = "invalid_input", details: dict | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


class ParamsError(ProcessorError):
    """Parameters failed validation; ``details`` maps each bad field to its message."""

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message, code="invalid_params", details=details)


class Cancelled(Exception):
    """Raised by ``ctx.progress()`` once the job was cancelled; processors let it propagate."""


class ProcessorContext(Protocol):
    job_id: str
    input: BinaryIO
    input_size: int
    input_name: str
    params: dict

    def open_output(
        self, name: str, content_type: str = "application/octet-stream"
    ) -> AbstractContextManager[BinaryIO]: ...

    def progress(self, bytes_read: int) -> None: ...


# Extra checks a JSON Schema cannot express (a codec name, two fields that must differ).
ParamsCheck = Callable[[dict], dict[str, str]]


@dataclass(frozen=True)
class Processor:
    job_type: str
    version: str
    title: str
    description: str
    params_schema: dict
    run: Callable[[ProcessorContext], dict]
    soft_time_limit: int = 300
    time_limit: int = 360
    # Lower than the platform's JOB_CPU_LIMIT_SECONDS / JOB_MEMORY_LIMIT_MB for this job type
    # (None: the platform's). The job runs in a child process held to them (jobs.isolation).
    cpu_limit: int | None = None
    memory_limit_mb: int | None = None
    # Optional: returns {field: message} for errors beyond the schema; runs only when the
    # schema itself passed, so it may assume types are right.
    check_params: ParamsCheck | None = field(default=None, compare=False)

    def validate_params(self, params: dict | None) -> dict:
        """Validate against ``params_schema`` and return a new dict with defaults filled."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ParamsError(
                "Invalid parameters: params must be a JSON object",
                details={"params": "must be a JSON object"},
            )
        details = _schema_errors(self.params_schema, params)
        if not details and self.check_params is not None:
            details = self.check_params(params)
        if details:
            summary = "; ".join(
                f"{name}: {msg}" for name, msg in sorted(details.items())
            )
            raise ParamsError(
                f"Invalid parameters for {self.job_type}: {summary}", details=details
            )
        filled = dict(params)
        for name, prop in self.params_schema.get("properties", {}).items():
            if name not in filled and "default" in prop:
                filled[name] = copy.deepcopy(prop["default"])
        return filled


def _schema_errors(schema: dict, params: dict) -> dict[str, str]:
    validator_cls = validator_for(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    details: dict[str, str] = {}
    known = schema.get("properties", {})
    for error in sorted(validator.iter_errors(params), key=lambda e: list(e.path)):
        if error.validator == "additionalProperties":
            allowed = ", ".join(sorted(known)) or "none"
            for name in sorted(set(params) - set(known)):
                details[name] = f"unknown parameter (allowed: {allowed})"
            continue
        name = str(error.path[0]) if error.path else "params"
        # The first error per field is the most useful one; later ones repeat it.
        details.setdefault(name, _describe(error))
    return details


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "type":
        return f"must be of type {error.validator_value}, got {error.instance!r}"
    if (
        error.validator in ("minLength", "maxLength")
        and error.validator_value == 1
        and (error.schema.get("minLength") == error.schema.get("maxLength") == 1)
    ):
        return f"must be exactly one character, got {error.instance!r}"
    if error.validator == "enum":
        return f"must be one of {', '.join(map(repr, error.validator_value))}, got {error.instance!r}"
    return error.message
