"""CSV_PROFILE: per column type, nulls, min/max and approximate distinct count.

pyarrow's streaming CSV reader (a block at a time, at most 2 ahead) reads every column as
text; processors/csv_profile_arrow.py infers the types vectorised per block, so memory is
flat: per column a few scalars and a 4 KiB HyperLogLog, whatever the row count. pyarrow
is imported only when a CSV_PROFILE job runs.

Type inference keeps, per column, the set of types every non-null value still fits,
narrowest first: integer < float, boolean, date, datetime, string. Empty strings are
nulls. min/max are compared in the inferred type (numbers as numbers, dates as dates),
tracked for every candidate type so no second pass is needed.
"""

from __future__ import annotations

import threading

from processors import _csv, conf
from processors.base import Processor, ProcessorContext, ProcessorError
from processors.registry import register


def _empty(source_bytes: int, blank: int) -> dict:
    return {"rows": 0, "blank_lines": blank, "bytes": source_bytes, "header": None, "columns": []}


def run(ctx: ProcessorContext) -> dict:
    import pyarrow as pa

    from processors import csv_profile_arrow as engine

    opts = _csv.CsvOptions.from_params(ctx.params)
    source = engine.Utf8Source(ctx, opts.encoding, opts.quotechar, engine.block_size())
    try:
        return _profile(ctx, opts, source, engine, pa)
    finally:
        source.finish()


def _profile(ctx: ProcessorContext, opts, source, engine, pa) -> dict:
    max_columns = conf.csv_profile_max_columns()
    field_limit = conf.csv_field_size_limit()
    record_limit = conf.csv_max_record_chars()
    line_limit = conf.csv_max_line_chars()
    first = engine.first_record(source, opts.delimiter, opts.quotechar)
    ctx.progress(source.bytes_read)
    if first is None:  # only blank lines, or nothing
        return _empty(source.bytes_read, source.total_lines)
    if len(first) > max_columns:
        raise _too_many_columns(len(first), max_columns, 1)
    header = first if opts.has_header else None
    names = [f"c{i}" for i in range(len(first))]
    internal = first if opts.has_header else names
    columns = [engine.Column(name) for name in (header or [f"column_{i + 1}" for i in range(len(first))])]
    state = {"rows": 0, "lines": 0, "last": 1, "ragged_lines": 0}
    ragged: list[list[str]] = []

    lock = threading.Lock()  # pyarrow may call on_invalid from several parsing threads

    def on_invalid(row) -> str:
        fields = engine.parse_fields(row.text, opts.delimiter, opts.quotechar)
        if len(fields) > max_columns:
            raise _too_many_columns(len(fields), max_columns, state["lines"] + 1)
        with lock:
            ragged.append(fields)
            state["ragged_lines"] += 1 + _count_lines(row.text)
        return "skip"

    def take_ragged() -> list[list[str]]:
        with lock:
            taken = ragged.copy()
            ragged.clear()
        return taken

    # Lines of the header record: its line breaks live in the names.
    state["lines"] = (1 + sum(_count_lines(name) for name in first)) if opts.has_header else 0
    try:
        reader = engine.open_reader(source, list(internal), opts.has_header, opts.delimiter,
                                    opts.quotechar, on_invalid)
        if any(field.type != pa.string() for field in reader.schema):
            # The header as pyarrow reads it differs from the first record read here.
            raise ProcessorError(
                "Malformed CSV: the header record could not be read consistently",
                code="malformed_csv",
                details={"line": 1},
            )
        for batch in reader:
            source.batch_done()
            ctx.progress(source.bytes_read)  # here, not in the reader's thread
            _check_sizes(batch, state["lines"], field_limit, record_limit, line_limit, opts.delimiter)
            state["rows"] += batch.num_rows
            state["lines"] += batch.num_rows
            if batch.num_rows:
                state["last"] = 1 + sum(_count_lines(arr[-1].as_py() or "") for arr in batch.columns)
            for column, arr in zip(columns, batch.columns, strict=False):
                state["lines"] += engine.line_breaks(arr)
                column.add(arr)
            for column in columns[batch.num_columns :]:  # added by a longer row earlier
                column.nulls += batch.num_rows
            if taken := take_ragged():
                state["rows"] += len(taken)
                _add_ragged(columns, taken, engine, pa)
    except pa.ArrowInvalid as exc:
        # pyarrow refuses a record longer than its block, which is at most the record limit.
        limit = min(record_limit, source.block)
        raise _arrow_error(exc, state["lines"] + state["ragged_lines"] + 1, limit) from None
    if taken := take_ragged():
        state["rows"] += len(taken)
        _add_ragged(columns, taken, engine, pa)
    state["lines"] += state["ragged_lines"]
    if source.quotes % 2 and _ends_inside_quotes(columns, source):
        line = state["lines"] - state["last"] + 1
        raise ProcessorError(
            f"Malformed CSV in the record starting on line {line}: "
            "unterminated quoted field at end of file",
            code="malformed_csv",
            details={"line": line},
        )
    return {
        "rows": state["rows"],
        "blank_lines": max(0, source.total_lines - state["lines"]),
        "bytes": source.bytes_read,
        "header": header,
        "columns": [column.summary() for column in columns],
    }


def _ends_inside_quotes(columns, source) -> bool:
    # An odd quote count alone is not proof (a quote inside an unquoted field is
    # literal); an unterminated quote swallows the last line break into a value.
    return source.last_byte not in (b"\n", b"\r") or any(
        c.str_max is not None and c.str_max.endswith(("\n", "\r")) for c in columns
    )


def _add_ragged(columns, ragged, engine, pa) -> None:
    # Rows with another field count than the first record: short rows' missing fields
    # are nulls, longer rows add columns named by position.
    width = max(len(fields) for fields in ragged)
    seen = columns[0].nulls + columns[0].values  # rows so far: none had these columns
    while len(columns) < width:
        column = engine.Column(f"column_{len(columns) + 1}")
        column.nulls = seen
        columns.append(column)
    for index, column in enumerate(columns):
        values = [fields[index] if index < len(fields) and fields[index] != "" else None for fields in ragged]
        column.add(pa.array(values, type=pa.string()))


def _check_sizes(batch, lines_before, field_limit, record_limit, line_limit, delimiter) -> None:
    import numpy as np
    import pyarrow.compute as pc

    from processors.csv_profile_arrow import byte_lengths, data_bytes

    if not batch.num_rows:
        return
    totals = [data_bytes(arr) for arr in batch.columns]
    if max(totals) <= field_limit and sum(totals) + batch.num_rows * batch.num_columns <= min(record_limit, line_limit):
        return  # the whole block is within every limit (the usual case: no per-row pass)
    # Bytes first (from the offsets, no pass over the data): never fewer than characters.
    record = np.full(batch.num_rows, batch.num_columns - 1, dtype=np.int64)
    longest_field = 0
    for arr in batch.columns:
        lengths = byte_lengths(arr)
        longest_field = max(longest_field, int(lengths.max()))
        record += lengths
    if longest_field <= field_limit and int(record.max()) <= min(record_limit, line_limit):
        return
    lengths = [pc.fill_null(pc.utf8_length(arr), 0) for arr in batch.columns]
    longest_field = max(pc.max(length).as_py() or 0 for length in lengths)
    record = lengths[0]
    for length in lengths[1:]:
        record = pc.add(record, length)
    record = pc.add(record, len(lengths) - 1)  # the delimiters
    longest_record = pc.max(record).as_py()
    if longest_field <= field_limit and longest_record <= min(record_limit, line_limit):
        return
    index = pc.index(record, pc.max(record)).as_py() if longest_field <= field_limit else None
    if longest_field > field_limit:
        index = min(pc.index(length, pc.max(length)).as_py() for length in lengths
                    if (pc.max(length).as_py() or 0) > field_limit)
    row = [arr[index].as_py() or "" for arr in batch.columns]
    before = sum(_count_lines(v.as_py() or "") for arr in batch.columns for v in arr[:index])
    line = lines_before + index + before + 1
    if longest_field > field_limit:
        raise ProcessorError(
            f"Malformed CSV: a field in the record starting on line {line} is longer than "
            f"{field_limit} characters (CSV_FIELD_SIZE_LIMIT)",
            code="field_too_large",
            details={"line": line},
        )
    if longest_record > record_limit:
        raise _record_too_large(line, record_limit)
    text = delimiter.join(row)
    for offset, physical in enumerate(text.splitlines()):
        if len(physical) > line_limit:
            raise ProcessorError(
                f"Line {line + offset} is longer than {line_limit} characters (CSV_MAX_LINE_CHARS)",
                code="line_too_long",
                details={"line": line + offset},
            )


def _count_lines(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _record_too_large(line: int, limit: int) -> ProcessorError:
    return ProcessorError(
        f"The record starting on line {line} is longer than {limit} characters "
        "(CSV_MAX_RECORD_CHARS); refusing to load it into memory",
        code="record_too_large",
        details={"line": line},
    )


def _too_many_columns(count: int, limit: int, line: int) -> ProcessorError:
    return ProcessorError(
        f"The record starting on line {line} has {count} columns; "
        f"the limit is {limit} (CSV_PROFILE_MAX_COLUMNS)",
        code="too_many_columns",
        details={"line": line},
    )


def _arrow_error(exc: Exception, line: int, record_limit: int) -> ProcessorError:
    text = str(exc)
    if "straddl" in text or "block size" in text:
        return _record_too_large(line, record_limit)
    return ProcessorError(
        f"Malformed CSV in the record starting on line {line}: {text}",
        code="malformed_csv",
        details={"line": line},
    )


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
        soft_time_limit=1800,
        time_limit=1860,
    )
)
