"""What CSV_ROW_COUNT and CSV_PROFILE share: parameters, dialect, the streaming reader."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass

from processors import conf
from processors._streams import TextLines
from processors.base import ProcessorContext, ProcessorError

PARAMS_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "has_header": {
            "type": "boolean",
            "default": True,
            "description": "The first non-blank record holds column names.",
        },
        "delimiter": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1,
            "default": ",",
            "description": "One character separating fields.",
        },
        "quotechar": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1,
            "default": '"',
            "description": "One character quoting fields; doubled inside a quoted field.",
        },
        "encoding": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "default": "utf-8",
            "description": "A Python codec name, e.g. utf-8, latin-1, cp1252, utf-16.",
        },
    },
    "additionalProperties": False,
}

_LINE_BREAKS = ("\r", "\n")


def check_params(params: dict) -> dict[str, str]:
    errors: dict[str, str] = {}
    encoding = params.get("encoding", "utf-8")
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        errors["encoding"] = f"unknown encoding {encoding!r}"
    else:
        # bytes.decode refuses codecs such as rot13 or base64, which map bytes to bytes.
        try:
            b"a".decode(encoding)
        except LookupError:
            errors["encoding"] = f"{encoding!r} is not a text encoding"
        except UnicodeDecodeError:
            pass
    delimiter = params.get("delimiter", ",")
    quotechar = params.get("quotechar", '"')
    for name, value in (("delimiter", delimiter), ("quotechar", quotechar)):
        if value in _LINE_BREAKS:
            errors[name] = "must not be a line break"
    if delimiter == quotechar and "delimiter" not in errors:
        errors["quotechar"] = "must differ from the delimiter"
    return errors


@dataclass(frozen=True)
class CsvOptions:
    has_header: bool
    delimiter: str
    quotechar: str
    encoding: str

    @classmethod
    def from_params(cls, params: dict) -> CsvOptions:
        return cls(
            has_header=params.get("has_header", True),
            delimiter=params.get("delimiter", ","),
            quotechar=params.get("quotechar", '"'),
            encoding=params.get("encoding", "utf-8"),
        )

    @property
    def codec(self) -> str:
        return codecs.lookup(self.encoding).name

    @property
    def strips_bom(self) -> bool:
        return self.codec in ("utf-8", "utf-8-sig")


def make_reader(lines: Iterator[str], opts: CsvOptions) -> Iterator[list[str]]:
    # strict=True: an unterminated quote or text after a closing quote is an error,
    # not a silently merged field.
    return csv.reader(
        lines,
        delimiter=opts.delimiter,
        quotechar=opts.quotechar,
        doublequote=True,
        skipinitialspace=False,
        strict=True,
    )


@dataclass
class Record:
    fields: list[str]
    line: int  # physical line where the record starts


class Records:
    """Records of the input, ``None`` for each blank line; errors name the line.

    Memory is bounded by CSV_MAX_LINE_CHARS per line, CSV_FIELD_SIZE_LIMIT per field and
    CSV_MAX_RECORD_CHARS per record: a record of many short quoted fields spanning many
    lines is refused while it is read, not once csv.reader has built all its fields.
    """

    def __init__(self, ctx: ProcessorContext, opts: CsvOptions) -> None:
        self._opts = opts
        self._limit = conf.csv_field_size_limit()
        self._record_limit = conf.csv_max_record_chars()
        # Module-global in the csv module; every CSV processor sets the same configured value.
        csv.field_size_limit(self._limit)
        self._lines = TextLines(ctx, opts.encoding, conf.csv_max_line_chars())
        self._record_chars = 0  # characters of the record being read so far
        self._record_start = 1

    @property
    def bytes_read(self) -> int:
        return self._lines.bytes_read

    def _bounded_lines(self) -> Iterator[str]:
        for line in self._lines:
            self._record_chars += len(line)
            if self._record_chars > self._record_limit:
                raise ProcessorError(
                    f"The record starting on line {self._record_start} is longer than "
                    f"{self._record_limit} characters (CSV_MAX_RECORD_CHARS); refusing to load it into memory",
                    code="record_too_large",
                    details={"line": self._record_start},
                )
            yield line

    def __iter__(self) -> Iterator[Record | None]:
        lines = self._lines
        reader = make_reader(self._bounded_lines(), self._opts)
        first = True
        while True:
            start = lines.line_no + 1
            self._record_chars, self._record_start = 0, start
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise _csv_error(exc, start, self._limit) from None
            if first and row and self._opts.strips_bom and row[0].startswith("\ufeff"):
                row[0] = row[0][1:]
            first = False
            yield Record(row, start) if row else None


def _csv_error(exc: csv.Error, line: int, limit: int) -> ProcessorError:
    text = str(exc)
    if "field larger than field limit" in text:
        return ProcessorError(
            f"Malformed CSV: a field in the record starting on line {line} is longer than "
            f"{limit} characters (CSV_FIELD_SIZE_LIMIT)",
            code="field_too_large",
            details={"line": line},
        )
    if "unexpected end of data" in text:
        text = "unterminated quoted field at end of file"
    return ProcessorError(
        f"Malformed CSV in the record starting on line {line}: {text}",
        code="malformed_csv",
        details={"line": line},
    )
