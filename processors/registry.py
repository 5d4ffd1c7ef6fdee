"""Job type name -> Processor. Each processor module registers itself on import."""

from __future__ import annotations

from processors.base import Processor, ProcessorError

_REGISTRY: dict[str, Processor] = {}


class UnknownJobType(ProcessorError):
    def __init__(self, job_type: object) -> None:
        valid = ", ".join(sorted(_REGISTRY)) or "none registered"
        super().__init__(
            f"Unknown job type {job_type!r}; valid types: {valid}",
            code="unknown_job_type",
            details={"job_type": f"must be one of: {valid}"},
        )


def register(processor: Processor) -> Processor:
    existing = _REGISTRY.get(processor.job_type)
    # Re-registering the same object is harmless (module reloads); two different
    # processors under one name is a programming error that must not pass silently.
    if existing is not None and existing is not processor:
        raise ValueError(f"job type {processor.job_type!r} is already registered")
    _REGISTRY[processor.job_type] = processor
    return processor


def get_processor(job_type: str) -> Processor:
    try:
        return _REGISTRY[job_type]
    except (KeyError, TypeError):
        raise UnknownJobType(job_type) from None


def all_processors() -> list[Processor]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]
