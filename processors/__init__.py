"""Job processors, one module per job type; importing this package registers them all."""

from processors import (  # noqa: F401  (imported for their register() side effect)
    csv_profile,
    csv_row_count,
    json_canonicalize,
    pdf_extract_text,
    sha256,
)
from processors.base import (
    Cancelled,
    ParamsError,
    Processor,
    ProcessorContext,
    ProcessorError,
)
from processors.registry import UnknownJobType, all_processors, get_processor, register

__all__ = [
    "Cancelled",
    "ParamsError",
    "Processor",
    "ProcessorContext",
    "ProcessorError",
    "UnknownJobType",
    "all_processors",
    "get_processor",
    "register",
]
