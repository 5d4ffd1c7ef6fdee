"""CSV_ROW_COUNT: exact counts on tricky CSV, errors that name the line, flat memory."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors import Cancelled, ProcessorError, csv_row_count
from processors.testing import MemoryContext, run_processor

from .streams import RepeatingStream, measure_peak

CHUNKINGS = [None, 1, 2, 3, 7, [5, 1, 4]]


def count(data: bytes, **params) -> dict:
    chunked = params.pop("chunked_reads", None)
    result, _ = run_processor("CSV_ROW_COUNT", data, params, chunked_reads=chunked)
    return result


def reference(
    data: bytes, has_header: bool = True, encoding: str = "utf-8-sig"
) -> dict:
    """What csv.reader (strict) sees, with blank lines ([] rows) counted apart."""
    rows = list(csv.reader(io.StringIO(data.decode(encoding), newline=""), strict=True))
    records = [r for r in rows if r]
    first = records[0] if records else None
    return {
        "rows": len(records) - (1 if has_header and first is not None else 0),
        "columns": len(first) if first is not None else 0,
        "header": first if has_header else None,
        "bytes": len(data),
        "blank_lines": len(rows) - len(records),
    }


# --- normal files ----------------------------------------------------------------------


def test_counts_data_rows_and_reads_the_header():
    assert count(b"id,name\n1,ann\n2,bob\n") == {
        "rows": 2,
        "columns": 2,
        "header": ["id", "name"],
        "bytes": 20,
        "blank_lines": 0,
    }


def test_without_header_every_record_is_a_row_and_header_is_null():
    result = count(b"1,ann\n2,bob\n", has_header=False)
    assert (result["rows"], result["columns"], result["header"]) == (2, 2, None)


def test_empty_file_has_no_rows_no_columns_and_no_header():
    assert count(b"") == {
        "rows": 0,
        "columns": 0,
        "header": None,
        "bytes": 0,
        "blank_lines": 0,
    }


def test_header_only_file_has_zero_rows():
    assert count(b"a,b,c\n")["rows"] == 0
    assert count(b"a,b,c")["columns"] == 3


def test_missing_final_newline_still_counts_the_last_record():
    assert count(b"h\n1\n2")["rows"] == 2


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_lf_crlf_and_lone_cr_line_endings(newline):
    data = newline.join([b"a,b", b"1,2", b"3,4", b""])
    assert count(data)["rows"] == 2
    assert count(data)["blank_lines"] == 0


def test_mixed_line_endings():
    assert count(b"h\r\n1\r2\n3\r\n")["rows"] == 3


def test_quoted_fields_with_newlines_delimiters_and_doubled_quotes_are_one_record():
    data = b'name,note\n"Smith, J","line1\nline2\r\nline3"\n"say ""hi""",""\n'
    result = count(data)
    assert result["rows"] == 2
    assert result["header"] == ["name", "note"]


def test_quoted_header_fields_are_parsed():
    assert count(b'"a,1","b\nc","d""e"\n1,2,3\n')["header"] == ["a,1", "b\nc", 'd"e']


def test_utf8_bom_is_stripped_from_the_header_but_counted_in_bytes():
    result = count(b"\xef\xbb\xbfid,name\n1,x\n")
    assert result["header"] == ["id", "name"]
    assert result["bytes"] == 15


def test_bom_only_file_is_empty():
    assert count(b"\xef\xbb\xbf", chunked_reads=1)["rows"] == 0


def test_blank_lines_are_not_records_but_are_reported():
    result = count(b"\n\na,b\n\n1,2\r\n\r\n3,4\n\n")
    assert result == {
        "rows": 2,
        "columns": 2,
        "header": ["a", "b"],
        "bytes": 19,
        "blank_lines": 5,
    }


def test_whitespace_only_and_empty_quoted_lines_are_records():
    assert count(b'h\n \n""\n')["rows"] == 2


def test_columns_come_from_the_first_record_even_if_later_rows_are_ragged():
    assert count(b"a,b,c\n1\n1,2,3,4\n")["columns"] == 3


def test_other_delimiter_and_quotechar():
    data = b"a;b\n'x;y';'it''s'\n"
    result = count(data, delimiter=";", quotechar="'")
    assert (result["rows"], result["header"]) == (1, ["a", "b"])


def test_latin1_file_uses_the_fast_path_and_decodes_the_header():
    result = count("caf\xe9,na\xefve\n1,2\n".encode("latin-1"), encoding="latin-1")
    assert result["header"] == ["caf\xe9", "na\xefve"]


def test_utf16_file_is_counted_by_the_csv_path_with_the_same_result():
    text = 'a,b\r\n"x\ny",2\r\n\r\n3,4\r\n'
    result = count(text.encode("utf-16"), encoding="utf-16")
    assert result == {
        **reference(text.encode("utf-8")),
        "bytes": len(text.encode("utf-16")),
    }


# --- malformed input ---------------------------------------------------------------------


def test_unterminated_quote_at_eof_names_the_line_where_the_record_starts():
    with pytest.raises(ProcessorError) as exc:
        count(b'a,b\n1,2\n3,"open\nstill open\n')
    assert exc.value.message == (
        "Malformed CSV in the record starting on line 3: unterminated quoted field at end of file"
    )
    assert exc.value.details == {"line": 3}


def test_stray_quote_inside_an_unquoted_field_is_refused_with_its_line():
    with pytest.raises(ProcessorError) as exc:
        count(b'a,b\n1,2\n3,4"5\n')
    assert "record starting on line 3" in exc.value.message
    assert (
        "quote character inside an unquoted field (line 3, byte offset 11)"
        in exc.value.message
    )


def test_text_after_a_closing_quote_is_refused_with_its_line():
    with pytest.raises(ProcessorError) as exc:
        count(b'a,b\n"multi\nline"x,2\n')
    assert "record starting on line 2" in exc.value.message
    assert (
        "',' or end of line expected after the closing quote (line 3"
        in exc.value.message
    )


@pytest.mark.parametrize("chunked", CHUNKINGS)
def test_error_lines_are_the_same_whatever_the_chunking(chunked):
    with pytest.raises(ProcessorError) as exc:
        count(b'h\r\n1\r\n"a\r\nb"\r\n"x"y\r\n', chunked_reads=chunked)
    assert exc.value.details == {"line": 5, "offset": 16}


def test_invalid_utf8_names_the_byte_offset_and_line():
    with pytest.raises(ProcessorError) as exc:
        count(b"a,b\n1,2\n3,\xff\n")
    assert exc.value.code == "invalid_encoding"
    assert exc.value.message.startswith("Invalid utf-8 data at byte offset 10 (line 3)")


def test_utf8_sequence_cut_by_end_of_file_is_invalid():
    with pytest.raises(ProcessorError) as exc:
        count(b"a,b\n1,\xe2\x82", chunked_reads=1)
    assert "byte offset 6 (line 2)" in exc.value.message


def test_invalid_cp1252_byte_is_reported():
    with pytest.raises(ProcessorError, match="byte offset 2"):
        count(b"a,\x81\n", encoding="cp1252")


def test_binary_garbage_is_a_clear_error_not_a_crash():
    garbage = bytes(range(256)) * 40
    with pytest.raises(ProcessorError) as exc:
        count(garbage)
    assert exc.value.code in ("invalid_encoding", "malformed_csv")


def test_header_longer_than_the_limit_is_refused(monkeypatch):
    from processors import conf

    monkeypatch.setattr(conf, "csv_header_max_bytes", lambda: 100)
    with pytest.raises(ProcessorError, match="header record is longer than 100 bytes"):
        count(b"x" * 101 + b"\n1\n")
    assert count(b"x" * 101 + b"\n1\n", has_header=False)["rows"] == 2


# --- chunk boundaries and agreement with csv.reader ----------------------------------------

TRICKY = [
    b'a,b\r\n"x\r\ny",2\r\n\r\n"",""\r\n',
    b'\xef\xbb\xbf"h1","h""2"\r3,4\r\r5,6',
    b'"a""",b\n""""\n"\n",\n',
    b"\n\n\r\n\r\rlast",
    'h\n"caf\u00e9 \u20ac",\U0001f600\n'.encode(),
    b'a\n"x"\n""\n"""",\n',
]


@pytest.mark.parametrize("data", TRICKY)
@pytest.mark.parametrize("chunked", CHUNKINGS)
def test_every_chunk_boundary_gives_the_csv_reader_result(data, chunked):
    assert count(data, chunked_reads=chunked) == reference(data)


csv_field = st.text(alphabet='ab,"\r\n é', max_size=6)
csv_row = st.lists(csv_field, min_size=0, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(csv_row, max_size=12),
    terminator=st.sampled_from(["\n", "\r\n", "\r"]),
    trailing=st.booleans(),
    bom=st.booleans(),
    has_header=st.booleans(),
    chunk=st.integers(min_value=1, max_value=9),
)
def test_files_written_by_csv_writer_count_like_csv_reader(
    rows, terminator, trailing, bom, has_header, chunk
):
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator=terminator).writerows(rows)
    text = out.getvalue()
    if not trailing and text.endswith(terminator):
        text = text[: -len(terminator)]
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    try:
        expected = reference(data, has_header)
    except csv.Error:
        return  # e.g. a final row [''] without terminator is written as "" ... fine either way
    assert count(data, has_header=has_header, chunked_reads=chunk) == expected


@settings(max_examples=500, deadline=None)
@given(
    data=st.binary(max_size=40).map(lambda b: bytes(b'a,"\r\n'[x % 5] for x in b)),
    chunk=st.integers(1, 5),
)
def test_random_soup_agrees_with_csv_reader_whenever_ours_accepts(data, chunk):
    """Ours is stricter than csv (a quote inside an unquoted field is an error), but
    whatever both accept must count the same, and whatever csv refuses ours refuses."""
    try:
        expected = reference(data)
    except csv.Error:
        expected = None
    try:
        got = count(data, chunked_reads=chunk)
    except ProcessorError as exc:
        assert exc.code == "malformed_csv"
        assert "line" in exc.details
        return
    assert got == expected


# --- size, memory, cancellation ----------------------------------------------------------


def test_a_20_mb_single_line_is_counted():
    data = b"x," * (10 * 1024 * 1024)
    result = count(data, has_header=False)
    assert (result["rows"], result["columns"]) == (1, 10 * 1024 * 1024 + 1)


def test_memory_stays_flat_on_a_large_stream():
    block = b'1,"quoted, field",3.14,"multi\nline"\n'
    records = 64 * 1024 * 1024 // len(block)
    size = 8 + records * len(block)
    stream = RepeatingStream(block, size, head=b"a,b,c,d\n")

    def run():
        return run_processor("CSV_ROW_COUNT", stream, input_size=size)[0]  # type: ignore[arg-type]

    result, peak = measure_peak(run)
    assert result["rows"] == records
    assert (
        peak < 48 * 1024 * 1024
    )  # one 4 MiB chunk plus per-slice arrays, not the file


def test_cancellation_stops_at_the_next_chunk():
    ctx = MemoryContext(
        b"h\n" + b"1\n" * 100, job_type="CSV_ROW_COUNT", chunked_reads=10
    )

    def cancel_after_first(n: int, original=ctx.progress) -> None:
        if n >= 20:
            ctx.cancel()
        original(n)

    ctx.progress = cancel_after_first  # type: ignore[method-assign]
    from processors import get_processor

    with pytest.raises(Cancelled):
        get_processor("CSV_ROW_COUNT").run(ctx)
    assert ctx.progress_calls == [10, 20]
    assert ctx.outputs == {}


def test_progress_reports_cumulative_bytes():
    _, ctx = run_processor("CSV_ROW_COUNT", b"h\n1\n2\n", chunked_reads=2)
    assert ctx.progress_calls == [2, 4, 6]


def test_a_wrong_declared_size_does_not_matter_to_a_streaming_count():
    result, _ = run_processor("CSV_ROW_COUNT", b"h\n1\n", input_size=10**12)
    assert (result["rows"], result["bytes"]) == (1, 4)


# --- the fast scan against the exact scan ---------------------------------------------------
#
# Past the first record, each slice goes through _Scanner._scan_fast (whole-buffer masks,
# a word-parallel quote parity); anything unusual falls back to the exact position-based
# scan, which also writes every error message. Turning the fast scan off gives the exact
# scan alone: both must agree on every result and every error, byte for byte.


@contextmanager
def exact_scan_only() -> Iterator[None]:
    original = csv_row_count._Scanner._scan_fast
    csv_row_count._Scanner._scan_fast = lambda self, buf: False  # type: ignore[method-assign]
    try:
        yield
    finally:
        csv_row_count._Scanner._scan_fast = original  # type: ignore[method-assign]


def outcome(data: bytes, chunk: int | list[int] | None, **params) -> object:
    try:
        return count(data, chunked_reads=chunk, **params)
    except ProcessorError as exc:
        return (exc.code, exc.message, exc.details)


def assert_fast_matches_exact(data: bytes, chunk, **params) -> object:
    got = outcome(data, chunk, **params)
    with exact_scan_only():
        expected = outcome(data, chunk, **params)
    assert got == expected
    return got


SOUP = b'ab,"\r\n \xc3\xa9\xff;'


@settings(max_examples=700, deadline=None)
@given(
    data=st.binary(max_size=120).map(lambda b: bytes(SOUP[x % len(SOUP)] for x in b)),
    chunk=st.one_of(st.integers(1, 48), st.lists(st.integers(1, 17), min_size=1)),
    has_header=st.booleans(),
)
def test_fast_scan_gives_the_exact_scans_results_and_errors(data, chunk, has_header):
    assert_fast_matches_exact(data, chunk, has_header=has_header)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(st.text(alphabet='ab,"\r\n é', max_size=8), max_size=5), max_size=40),
    terminator=st.sampled_from(["\n", "\r\n", "\r"]),
    blank_every=st.integers(0, 5),
    chunk=st.integers(1, 300),
)
def test_fast_scan_agrees_on_valid_files_with_blank_lines(rows, terminator, blank_every, chunk):
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator=terminator).writerows(rows)
    lines = out.getvalue().split(terminator)
    if blank_every:
        lines = [x for i, line in enumerate(lines) for x in ([line, ""] if i % blank_every == 0 else [line])]
    data = terminator.join(lines).encode()
    assert_fast_matches_exact(data, chunk)


def big_quoted_csv(rows: int, seed: int, newline: str = "\n") -> bytes:
    rng = random.Random(seed)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(["id", "name", "note", "value"])
    notes = ["plain", 'say "hi"', "two\nlines", "crlf\r\ninside", "", "a,b", "caf\u00e9"]
    for i in range(rows):
        if rng.random() < 0.01:
            out.write(newline)  # a blank line
        writer.writerow([i, f"Smith, {rng.randrange(1000)}", rng.choice(notes), rng.random()])
    return out.getvalue().encode()


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("chunk", [None, 4093, 65536, [100_003, 7, 1 << 20]])
def test_fast_scan_agrees_on_a_large_quoted_file_in_any_slicing(newline, chunk):
    data = big_quoted_csv(40_000, seed=len(newline), newline=newline)
    assert assert_fast_matches_exact(data, chunk) == reference(data)


@pytest.mark.parametrize(
    "damage",
    [b'x"y', b'"x"y', b"\xff", b'"never closed'],
    ids=["stray quote", "text after closing quote", "bad utf-8", "unterminated"],
)
def test_errors_deep_in_a_large_file_are_the_exact_scans_errors(damage):
    data = big_quoted_csv(30_000, seed=7)
    cut = data.index(b"\n", len(data) * 2 // 3) + 1
    damaged = data[:cut] + damage + b"," + data[cut:]
    if damage == b'"never closed':
        damaged = data + damage
    got = assert_fast_matches_exact(damaged, 65536)
    assert isinstance(got, tuple) and got[0] in ("malformed_csv", "invalid_encoding")


def test_the_fast_scan_does_the_bulk_of_a_quoted_file():
    taken: list[bool] = []
    original = csv_row_count._Scanner._scan_fast

    def spy(self, buf: bytes) -> bool:
        taken.append(original(self, buf))
        return taken[-1]

    csv_row_count._Scanner._scan_fast = spy  # type: ignore[method-assign]
    try:
        data = big_quoted_csv(40_000, seed=3, newline="\r\n")
        assert count(data, chunked_reads=65536) == reference(data)
    finally:
        csv_row_count._Scanner._scan_fast = original  # type: ignore[method-assign]
    assert len(taken) > 10 and all(taken[1:])


@pytest.mark.parametrize(
    "data",
    [
        b'h\n1,ab"c"\n2\n',  # a quote inside an unquoted field
        b'h\n1,"ab"c,d\n2\n',  # text after a closing quote
        b'h\n1,"ab"\n"c\n""d"\r\n\r\n2\n',  # quoted line breaks, doubled quote, blank line
        b'h\n\n\r\n1\r\n\r\n"\n"\n\n',  # blank lines at every offset
    ],
)
@pytest.mark.parametrize("chunk", range(1, 14))
def test_fast_scan_agrees_at_every_slice_boundary(data, chunk):
    assert_fast_matches_exact(data, chunk)


@pytest.mark.parametrize("shift", range(5))
def test_utf8_characters_cut_by_any_internal_boundary_are_valid(shift):
    data = b"h" + b"x" * shift + b"\n" + "\u00e9,\u20ac\n".encode() * 40_000
    assert count(data) == reference(data)


def test_invalid_utf8_deep_in_a_slice_names_its_offset_and_line():
    rows = "\u00e9,1\n".encode() * 50_000  # 5 bytes a row
    at = 2 + 5 * 30_000
    data = b"h\n" + rows
    data = data[:at] + b"\xff" + data[at:]
    with pytest.raises(ProcessorError) as exc:
        count(data)
    assert exc.value.details == {"offset": at, "line": 30_002}
    assert exc.value.message.startswith(f"Invalid utf-8 data at byte offset {at} (line 30002)")



# --- a child that only counts rows ------------------------------------------------------

HEAVY_ENGINES = ("pyarrow", "duckdb", "polars", "pypdfium2", "pypdf", "pandas")
QUOTED_BLOCK = b'1,"quoted, field",2024-05-01,"multi\nline ""x"""\r\n'

_COUNT_IN_A_FRESH_INTERPRETER = """
import json, sys
from processors import get_processor
from processors.testing import MemoryContext
block = bytes.fromhex(sys.argv[1])
data = b"a,b,c,d\\r\\n" + block * (32 * 1024 * 1024 // len(block))
result = get_processor("CSV_ROW_COUNT").run(MemoryContext(data, {}, job_type="CSV_ROW_COUNT"))
status = open("/proc/self/status").read()
peak_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
engines = sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[2:]))
print(json.dumps({"rows": result["rows"], "engines": engines, "peak_kib": peak_kib}))
"""


def test_counting_rows_loads_no_heavy_engine_and_stays_small():
    """The processor child imports every processor; counting rows in it must not pull in a
    columnar or PDF engine, whose pages would stay in every child that only counts rows."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_IN_A_FRESH_INTERPRETER, QUOTED_BLOCK.hex(), *HEAVY_ENGINES],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rows"] == 32 * 1024 * 1024 // len(QUOTED_BLOCK)
    assert report["engines"] == []
    # The interpreter, numpy, the 32 MiB input it holds and the per-slice arrays.
    assert report["peak_kib"] < 128 * 1024
