"""CSV_PROFILE: per-column type, nulls, typed min/max, approximate distinct count."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors import Cancelled, ProcessorError, get_processor
from processors.hll import HyperLogLog
from processors.testing import MemoryContext, run_processor

from .streams import RepeatingStream, measure_peak

MiB = 1024 * 1024


def profile(data: bytes, **params) -> dict:
    chunked = params.pop("chunked_reads", None)
    return run_processor("CSV_PROFILE", data, params, chunked_reads=chunked)[0]


def columns(data: bytes, **params) -> dict[str, dict]:
    return {c["name"]: c for c in profile(data, **params)["columns"]}


SAMPLE = (
    b"id,price,active,day,at,name,mixed\n"
    b"1,9.5,true,2024-01-31,2024-01-31T10:00:00,ann,1\n"
    b"-3,10,False,2023-12-01,2023-12-01 08:30,bob,x\n"
    b"12,,TRUE,,2025-06-01T00:00:00,,2\n"
)


def test_types_are_inferred_from_all_non_null_values():
    cols = columns(SAMPLE)
    assert {name: c["type"] for name, c in cols.items()} == {
        "id": "integer",
        "price": "float",
        "active": "boolean",
        "day": "date",
        "at": "datetime",
        "name": "string",
        "mixed": "string",
    }


def test_min_and_max_are_compared_in_the_inferred_type():
    cols = columns(SAMPLE)
    assert (cols["id"]["min"], cols["id"]["max"]) == (-3, 12)  # not "-3" < "12" as text
    assert (cols["price"]["min"], cols["price"]["max"]) == (9.5, 10.0)
    assert (cols["active"]["min"], cols["active"]["max"]) == (False, True)
    assert (cols["day"]["min"], cols["day"]["max"]) == ("2023-12-01", "2024-01-31")
    assert cols["at"]["max"] == "2025-06-01T00:00:00"
    assert (cols["mixed"]["min"], cols["mixed"]["max"]) == ("1", "x")


def test_empty_strings_are_nulls():
    cols = columns(SAMPLE)
    assert (cols["price"]["nulls"], cols["price"]["non_null"]) == (1, 2)
    assert cols["id"]["nulls"] == 0


def test_all_null_column_has_no_type():
    cols = columns(b"a,b\n1,\n2,\n")
    assert cols["b"] == {
        "name": "b",
        "type": None,
        "nulls": 2,
        "non_null": 0,
        "min": None,
        "max": None,
        "distinct_approx": 0,
    }


def test_result_shape_counts_rows_and_blank_lines():
    result = profile(b"a\n1\n\n2\n")
    assert (
        result["rows"],
        result["blank_lines"],
        result["header"],
        result["bytes"],
    ) == (2, 1, ["a"], 7)


def test_without_header_columns_are_named_by_position():
    result = profile(b"1,x\n2,y\n", has_header=False)
    assert [c["name"] for c in result["columns"]] == ["column_1", "column_2"]
    assert result["rows"] == 2


def test_ragged_rows_count_missing_fields_as_nulls_and_add_extra_columns():
    cols = columns(b"a,b\n1\n1,2,3\n")
    assert cols["b"]["nulls"] == 1
    assert cols["column_3"]["non_null"] == 1


def test_distinct_count_is_close():
    data = b"v\n" + b"".join(b"%d\n" % (i % 5000) for i in range(20000))
    assert abs(columns(data)["v"]["distinct_approx"] - 5000) < 5000 * 0.05


def test_hyperloglog_is_exact_enough_when_small_and_within_error_when_large():
    small = HyperLogLog()
    for i in range(100):
        small.add(str(i))
    assert abs(small.count() - 100) <= 2
    big = HyperLogLog()
    for i in range(200_000):
        big.add(f"k{i}")
    assert abs(big.count() - 200_000) < 200_000 * 0.05


def test_bom_quotes_and_crlf_are_handled():
    cols = columns(b'\xef\xbb\xbfid,"note"\r\n1,"a\r\nb"\r\n2,"c,d"\r\n')
    assert list(cols) == ["id", "note"]
    assert (cols["note"]["min"], cols["note"]["max"]) == ("a\r\nb", "c,d")


@pytest.mark.parametrize("chunked", [1, 3, 7])
def test_chunking_does_not_change_the_profile(chunked):
    assert profile(SAMPLE, chunked_reads=chunked) == profile(SAMPLE)


def test_unterminated_quote_names_the_line():
    with pytest.raises(ProcessorError) as exc:
        profile(b'a,b\n1,2\n3,"open\n')
    assert exc.value.message == (
        "Malformed CSV in the record starting on line 3: unterminated quoted field at end of file"
    )


def test_invalid_utf8_names_offset_and_line():
    with pytest.raises(ProcessorError) as exc:
        profile(b"a\n1\n\xc3\x28\n")
    assert exc.value.message.startswith("Invalid utf-8 data at byte offset 4 (line 3)")


def test_too_many_columns_is_refused(monkeypatch):
    from processors import conf

    monkeypatch.setattr(conf, "csv_profile_max_columns", lambda: 10)
    with pytest.raises(ProcessorError) as exc:
        profile(b",".join([b"c"] * 11) + b"\n")
    assert (
        exc.value.message
        == "The record starting on line 1 has 11 columns; the limit is 10 (CSV_PROFILE_MAX_COLUMNS)"
    )


def test_field_over_the_size_limit_is_a_clear_error(monkeypatch):
    from processors import conf

    monkeypatch.setattr(conf, "csv_field_size_limit", lambda: 1000)
    with pytest.raises(ProcessorError) as exc:
        profile(b'a\n1\n"' + b"x\n" * 1000 + b'"\n')
    assert exc.value.code == "field_too_large"
    assert (
        "record starting on line 3 is longer than 1000 characters" in exc.value.message
    )


def test_a_line_over_the_line_limit_is_refused_without_loading_it(monkeypatch):
    from processors import conf

    monkeypatch.setattr(conf, "csv_max_line_chars", lambda: 1000)
    with pytest.raises(ProcessorError) as exc:
        profile(b"a\n" + b"x" * 5000)
    assert exc.value.code == "line_too_long"
    assert exc.value.message.startswith("Line 2 is longer than 1000 characters")


def test_utf16_input_is_profiled():
    cols = columns("n,s\n1,\u00e9\n2,z\n".encode("utf-16"), encoding="utf-16")
    assert (cols["n"]["type"], cols["s"]["max"]) == ("integer", "\u00e9")


def test_memory_stays_flat_on_a_large_stream():
    # Long values keep the row count (and the run time) small while the file is big.
    block = b"1," + b"x" * 1000 + b"\n"
    rows = 32 * 1024 * 1024 // len(block)
    size = 4 + rows * len(block)
    stream = RepeatingStream(block, size, head=b"a,b\n")
    result, peak = measure_peak(
        lambda: run_processor("CSV_PROFILE", stream, input_size=size)[0]
    )  # type: ignore[arg-type]
    assert result["rows"] == rows
    # A few blocks (CSV_PROFILE_BLOCK_BYTES, 4 MiB) held at once, whatever the row count;
    # pyarrow's own buffers are not traced here (the worker RSS tests see them).
    assert peak < 40 * 1024 * 1024


def test_cancellation_stops_at_the_next_chunk():
    ctx = MemoryContext(SAMPLE * 1000, job_type="CSV_PROFILE", chunked_reads=10)
    ctx.cancel()
    with pytest.raises(Cancelled):
        get_processor("CSV_PROFILE").run(ctx)
    assert len(ctx.progress_calls) == 1  # the first progress report stops it


def test_empty_file_has_no_rows_and_no_columns():
    assert profile(b"") == {
        "rows": 0,
        "blank_lines": 0,
        "bytes": 0,
        "header": None,
        "columns": [],
    }


def test_binary_garbage_is_a_clear_error():
    with pytest.raises(ProcessorError) as exc:
        profile(bytes(range(256)) * 40)
    assert exc.value.code == "invalid_encoding"


def test_a_multi_line_record_over_the_record_limit_is_refused_while_it_is_read(monkeypatch):
    """Short quoted fields, each with a line break: no field and no line is long, but the
    record is, and it is refused before csv.reader holds all of its fields."""
    from processors import conf

    monkeypatch.setattr(conf, "csv_max_record_chars", lambda: 10_000)
    record = b'"x\n",' * 1_000_000  # 5 MB in one record: five reads of 1 MiB
    ctx = MemoryContext(b"a,b\n1,2\n" + record + b"z\n", job_type="CSV_PROFILE")
    with pytest.raises(ProcessorError) as exc:
        get_processor("CSV_PROFILE").run(ctx)
    assert exc.value.code == "record_too_large"
    assert exc.value.message.startswith("The record starting on line 3 is longer than 10000 characters")
    assert max(ctx.progress_calls) < len(record)  # stopped long before the end


def test_records_up_to_the_record_limit_are_profiled(monkeypatch):
    from processors import conf

    monkeypatch.setattr(conf, "csv_max_record_chars", lambda: 10_000)
    rows = b'"x\ny",2\n' * 2000  # 2000 records of 8 characters: 16 KB in all, each far below the limit
    assert profile(b"a,b\n" + rows)["rows"] == 2000


# Blocks, widening and the reference semantics -------------------------------------

def _reference(data: bytes, has_header: bool = True) -> dict:
    """The profile by csv.reader and the documented converters, value by value."""
    import csv
    import io

    from processors.csv_profile_arrow import TYPES

    text = data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    blank = sum(1 for row in rows if not row)
    records = [row for row in rows if row]
    header = records.pop(0) if has_header and records else None
    width = max([len(header or [])] + [len(r) for r in records]) if (records or header) else 0
    names = list(header or []) + [f"column_{i + 1}" for i in range(len(header or []), width)]
    out = []
    for index, name in enumerate(names):
        values = [r[index] for r in records if index < len(r) and r[index] != ""]
        kind, low, high = None, None, None
        if values:
            kind, low, high = "string", min(values), max(values)
            for type_name, convert in TYPES:
                try:
                    converted = [convert(v) for v in values]
                    low, high = min(converted), max(converted)
                except (ValueError, KeyError, TypeError):
                    continue
                kind = type_name
                break
            if kind == "string":
                low, high = min(values), max(values)
        out.append({
            "name": name, "type": kind, "nulls": len(records) - len(values), "non_null": len(values),
            "min": low.isoformat() if hasattr(low, "isoformat") else low,
            "max": high.isoformat() if hasattr(high, "isoformat") else high,
            "distinct": len(set(values)),
        })
    return {"rows": len(records), "blank_lines": blank, "header": header, "columns": out}


def _assert_matches_reference(data: bytes, **params) -> None:
    got = profile(data, **params)
    want = _reference(data, params.get("has_header", True))
    assert (got["rows"], got["blank_lines"], got["header"]) == (want["rows"], want["blank_lines"], want["header"])
    assert len(got["columns"]) == len(want["columns"])
    for g, w in zip(got["columns"], want["columns"], strict=True):
        assert {k: g[k] for k in ("name", "type", "nulls", "non_null", "min", "max")} == {
            k: w[k] for k in ("name", "type", "nulls", "non_null", "min", "max")
        }
        assert abs(g["distinct_approx"] - w["distinct"]) <= max(2, w["distinct"] * 0.05)


_field = st.one_of(
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["", "true", "FALSE", "tRuE", "2024-02-29", "2023-02-29", "0000-01-01",
                     "2024-01-31T10:00", "2024-01-31 10:00:00.5", "2024-01-31T10:00:00+01:00",
                     "2024-01-31T10", " 7", "+7", "1_000", "nan", "1e400", "007", "-0"]),
    st.text(alphabet=st.sampled_from('ab,"\r\n é'), max_size=6),
)


def _encode_csv(rows: list[list[str]], crlf: bool, bom: bool) -> bytes:
    import csv
    import io

    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n" if crlf else "\n").writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8")


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 4),
    body=st.lists(st.lists(_field, min_size=1, max_size=4), max_size=12),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_profile_matches_the_reference_on_generated_csv(width, body, crlf, bom):
    """Quoted newlines and delimiters, doubled quotes, empty fields, CRLF, BOM, ragged rows."""
    header = [f"h{i}" for i in range(width)]
    rows = [header] + [row for row in body if row != [""]]  # a lone "" row is written as a blank line
    _assert_matches_reference(_encode_csv(rows, crlf, bom))


def test_a_value_that_does_not_fit_in_a_later_block_widens_the_type():
    ints = b"".join(b"%d\n" % i for i in range(600_000))  # about 4 MiB: several blocks
    assert len(ints) > 3 * MiB
    cols = columns(b"n\n" + ints + b"2.5\n")
    assert (cols["n"]["type"], cols["n"]["min"], cols["n"]["max"]) == ("float", 0.0, 599999.0)
    cols = columns(b"n\n" + ints + b"x\n")
    assert (cols["n"]["type"], cols["n"]["min"], cols["n"]["max"]) == ("string", "0", "x")
    # Integer texts are counted once whichever block they are in.
    cols = columns(b"n\n" + ints + b"x\n" + ints[:70_000])
    assert abs(cols["n"]["distinct_approx"] - 600_001) < 600_001 * 0.05


def test_ragged_rows_in_a_later_block_add_columns_with_nulls_before_and_after():
    rows = b"1,2\n" * 400_000
    result = profile(b"a,b\n" + rows + b"3,4,5\n" + rows)
    extra = {c["name"]: c for c in result["columns"]}["column_3"]
    assert (result["rows"], extra["non_null"], extra["nulls"]) == (800_001, 1, 800_000)


def test_datetimes_with_offsets_are_read_by_fromisoformat_and_mixing_them_with_naive_is_string():
    cols = columns(b"t\n2024-01-31T10:00:00+01:00\n2024-01-31T09:30:00Z\n")
    assert (cols["t"]["type"], cols["t"]["min"], cols["t"]["max"]) == (
        "datetime", "2024-01-31T10:00:00+01:00", "2024-01-31T09:30:00+00:00"  # 09:00Z < 09:30Z
    )
    assert columns(b"t\n2024-01-31T10:00:00+01:00\n2024-01-31T09:30:00\n")["t"]["type"] == "string"


def test_a_record_longer_than_a_block_is_refused_early():
    record = b'"v\n",' * (4 * MiB)  # 20 MiB: short quoted fields, each with a line break
    ctx = MemoryContext(b"a\n1\n" + record * 6 + b"z\n", job_type="CSV_PROFILE")
    with pytest.raises(ProcessorError) as exc:
        get_processor("CSV_PROFILE").run(ctx)
    assert exc.value.code == "record_too_large"
    assert "line 3" in exc.value.message
    assert max(ctx.progress_calls) < 40 * MiB  # most of the 120 MiB is never read


def test_many_blocks_of_quoted_newlines_blank_lines_and_ragged_rows_match_the_reference():
    """Blocks are parsed on several threads: counts must not depend on their order."""
    data = b"a,b\r\n" + (b'1,"x\ny"\r\n\r\n2,3,4\r\n5\r\n"q,""r""",\r\n') * 150_000
    assert len(data) > 4 * MiB
    _assert_matches_reference(data)
