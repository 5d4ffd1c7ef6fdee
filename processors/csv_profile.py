"""CSV_PROFILE: per column type, nulls, min/max and approximate distinct count.

Streams csv.reader over an incremental decoder, so memory is flat: per column a few
scalars and a 4 KiB HyperLogLog, whatever the row count.

Type inference keeps, per column, the set of types every non-null value still fits,
narrowest first: integer < float, boolean, date, datetime, string. Empty strings are
nulls. min/max are compared in the inferred type (numbers as numbers, dates as dates),
tracked for every candidate type so no second pass is needed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from processors import _csv, conf
from processors.base import Processor, ProcessorContext, ProcessorError
from processors.hll import HyperLogLog
from processors.registry import register

_BOOLEANS = {"true": True, "false": False}


def _to_bool(text: str) -> bool:
    return _BOOLEANS[text.lower()]


def _to_int(text: str) -> int:
    if "_" in text or len(text) > 40:  # int() accepts 1_000; CSV readers would not
        raise ValueError(text)
    return int(text)


def _to_float(text: str) -> float:
    if "_" in text or text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise ValueError(text)
    return float(text)


def _to_date(text: str) -> dt.date:
    if len(text) != 10:
        raise ValueError(text)
    return dt.date.fromisoformat(text)


def _to_datetime(text: str) -> dt.datetime:
    if len(text) < 16 or text[10] not in "T ":
        raise ValueError(text)
    return dt.datetime.fromisoformat(text)


# Narrowest first; "string" always fits and ends every list.
_TYPES: list[tuple[str, Callable[[str], Any]]] = [
    ("integer", _to_int),
    ("float", _to_float),
    ("boolean", _to_bool),
    ("date", _to_date),
    ("datetime", _to_datetime),
]


class _Column:
    def __init__(self, name: str) -> None:
        self.name = name
        self.nulls = 0
        self.values = 0
        self.candidates = dict(_TYPES)
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}
        self.str_min: str | None = None
        self.str_max: str | None = None
        self.distinct = HyperLogLog()

    def add(self, text: str) -> None:
        if text == "":
            self.nulls += 1
            return
        self.values += 1
        self.distinct.add(text)
        if self.str_min is None or text < self.str_min:
            self.str_min = text
        if self.str_max is None or text > self.str_max:
            self.str_max = text
        for type_name, convert in list(self.candidates.items()):
            try:
                value = convert(text)
                # Inside the try: a naive and an aware datetime do not compare, and a
                # column mixing them is not a datetime column.
                if type_name not in self.mins or value < self.mins[type_name]:
                    self.mins[type_name] = value
                if type_name not in self.maxs or value > self.maxs[type_name]:
                    self.maxs[type_name] = value
            except (ValueError, KeyError, TypeError):
                del self.candidates[type_name]

    def summary(self) -> dict:
        type_name = next(iter(self.candidates), "string") if self.values else None
        if type_name in (None, "string"):
            low, high = self.str_min, self.str_max
        else:
            low, high = self.mins[type_name], self.maxs[type_name]
        return {
            "name": self.name,
            "type": type_name,
            "nulls": self.nulls,
            "non_null": self.values,
            "min": _jsonable(low),
            "max": _jsonable(high),
            "distinct_approx": self.distinct.count() if self.values else 0,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def run(ctx: ProcessorContext) -> dict:
    opts = _csv.CsvOptions.from_params(ctx.params)
    max_columns = conf.csv_profile_max_columns()
    records = _csv.Records(ctx, opts)
    columns: list[_Column] = []
    rows = blank = 0
    header: list[str] | None = None
    for record in records:
        if record is None:
            blank += 1
            continue
        fields = record.fields
        if len(fields) > max_columns:
            raise ProcessorError(
                f"The record starting on line {record.line} has {len(fields)} columns; "
                f"the limit is {max_columns} (CSV_PROFILE_MAX_COLUMNS)",
                code="too_many_columns",
                details={"line": record.line},
            )
        if header is None and opts.has_header:
            header = fields
            columns = [_Column(name) for name in fields]
            continue
        rows += 1
        # Ragged rows: extra fields get columns named by position, missing ones are nulls.
        while len(columns) < len(fields):
            columns.append(_Column(f"column_{len(columns) + 1}"))
        for column, text in zip(columns, fields, strict=False):  # short rows: the rest are empty
            column.add(text)
        for column in columns[len(fields) :]:
            column.nulls += 1
    return {
        "rows": rows,
        "blank_lines": blank,
        "bytes": records.bytes_read,
        "header": header,
        "columns": [column.summary() for column in columns],
    }


PROCESSOR = register(
    Processor(
        job_type="CSV_PROFILE",
        version="1.0",
        title="CSV column profile",
        description=(
            "For every column: inferred type (integer, float, boolean, date, datetime or "
            "string), null count (empty fields), typed min and max, approximate distinct count."
        ),
        params_schema=_csv.PARAMS_SCHEMA,
        run=run,
        check_params=_csv.check_params,
        # Python-speed parsing (a few MB/s): a few GB needs more than the default 5 min.
        soft_time_limit=1800,
        time_limit=1860,
    )
)
