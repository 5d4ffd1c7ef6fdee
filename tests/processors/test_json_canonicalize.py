"""JSON_CANONICALIZE: byte-exact RFC 8785 output and clear refusals."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from processors import Cancelled, ProcessorError, get_processor
from processors.json_canonicalize import es_number
from processors.testing import MemoryContext, run_processor


def canon(data: bytes, **kwargs) -> bytes:
    _, ctx = run_processor("JSON_CANONICALIZE", data, **kwargs)
    return ctx.outputs["canonical.json"]


def refusal(data: bytes, **kwargs) -> ProcessorError:
    with pytest.raises(ProcessorError) as exc:
        run_processor("JSON_CANONICALIZE", data, **kwargs)
    return exc.value


# --- RFC 8785 examples ------------------------------------------------------------------


def test_rfc8785_section_3_2_2_example():
    data = (
        b'{\n  "numbers": [333333333.33333329, 1E30, 4.50,\n'
        b"              2e-3, 0.000000000000000000000000001],\n"
        b'  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n'
        b'  "literals": [null, true, false]\n}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert canon(data) == expected


def test_rfc8785_section_3_2_3_sorting_by_utf16_code_units():
    data = (
        b'{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh",'
        b'"1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control",'
        b'"\\u00f6":"Latin Small Letter O With Diaeresis"}'
    )
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    assert canon(data) == expected


def test_surrogate_pair_keys_sort_before_high_bmp_keys_unlike_code_point_order():
    assert canon('{"\ufb01":1,"\U0001f600":2,"\u20ac":3}'.encode()) == (
        '{"\u20ac":3,"\U0001f600":2,"\ufb01":1}'.encode()
    )


# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_appendix_b_number_formatting(bits, expected):
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert es_number(value) == expected
    assert canon(f"[{value!r}]".encode()) == f"[{expected}]".encode()


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("1e-7", "1e-7"),
        ("1e-6", "0.000001"),
        ("0.00001", "0.00001"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("0.1", "0.1"),
        ("0.30000000000000004", "0.30000000000000004"),
        ("5e-324", "5e-324"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("4.50", "4.5"),
        ("1.0", "1"),
        ("1e400000000000", None),
        ("9007199254740992", "9007199254740992"),
        ("-9007199254740992", "-9007199254740992"),
        ("1152921504606846976", "1152921504606847000"),
        ("1000000000000000000000", "1e+21"),
        ("1e-400", "0"),
    ],
)
def test_number_literals(literal, expected):
    if expected is None:
        assert (
            "out of range for an IEEE 754 double"
            in refusal(f"[{literal}]".encode()).message
        )
    else:
        assert canon(f"[{literal}]".encode()) == f"[{expected}]".encode()


@pytest.mark.parametrize(
    "literal", ["9007199254740993", "-9007199254740993", "12345678901234567890123"]
)
def test_integers_a_double_cannot_hold_exactly_are_refused(literal):
    message = refusal(f'{{"n": {literal}}}'.encode()).message
    assert (
        f"integer {literal} cannot be represented exactly as an IEEE 754 double"
        in message
    )


def test_integer_beyond_double_range_is_refused():
    assert (
        "too large for an IEEE 754 double" in refusal(b"[" + b"9" * 5000 + b"]").message
    )


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(literal):
    assert f"{literal} is not valid JSON" in refusal(f"[{literal}]".encode()).message


# --- strings -------------------------------------------------------------------------------


def test_minimal_escaping_keeps_unicode_and_del_raw_and_escapes_controls():
    data = '["\\u007f\\u001f\\b\\t\\n\\f\\r\\"\\\\\\/é"]'.encode()
    assert canon(data) == '["\x7f\\u001f\\b\\t\\n\\f\\r\\"\\\\/é"]'.encode()


@pytest.mark.parametrize(
    ("text", "column"),
    [
        (b'["ok", "\\ud800"]', 9),
        (b'["\\udc00\\ud800"]', 3),
        (b'{"k\\ud83d": 1}', 4),
        (b'["\\ud83dx"]', 3),
    ],
)
def test_lone_surrogate_escapes_are_refused_with_their_position(text, column):
    error = refusal(text)
    assert "lone UTF-16 surrogate" in error.message
    assert error.details == {"line": 1, "column": column}


def test_raw_surrogate_bytes_are_invalid_utf8():
    error = refusal(b'["\xed\xa0\x80"]')
    assert error.message.startswith("Line 1, column 3: invalid UTF-8 at byte offset 2")


def test_an_escaped_backslash_before_u_is_not_a_surrogate():
    assert canon(b'["\\\\ud800"]') == b'["\\\\ud800"]'


# --- structure errors ----------------------------------------------------------------------


def test_duplicate_keys_are_refused_naming_the_key():
    assert (
        refusal(b'{"a": {"dup": 1, "b": 2, "dup": 3}}').message
        == "duplicate object key 'dup'"
    )


def test_invalid_json_names_line_and_column():
    error = refusal(b'{\n  "a": 1,\n  "b": tru\n}')
    assert error.message == "Line 3, column 8: invalid JSON: Expecting value"
    assert error.details == {"line": 3, "column": 8}


@pytest.mark.parametrize("data", [b"", b"   ", b"[1] [2]", b"\x00\x01\x02garbage"])
def test_empty_or_garbage_input_is_invalid_json(data):
    assert refusal(data).code == "invalid_json"


def test_binary_garbage_is_reported_as_invalid_utf8():
    assert "invalid UTF-8" in refusal(bytes(range(256))).message


def test_a_bom_is_ignored():
    assert canon(b'\xef\xbb\xbf{"b":1,"a":2}') == b'{"a":2,"b":1}'


def test_100k_nested_arrays_are_refused_without_recursion_error():
    error = refusal(b"[" * 100_000 + b"]" * 100_000)
    assert (
        error.message
        == "nesting is 100000 levels deep; the limit is 512 (JSON_CANONICALIZE_MAX_DEPTH)"
    )
    assert "levels deep" in refusal(b"[" * 100_000).message


def test_depth_at_the_limit_passes_and_one_more_is_refused():
    assert canon(b"[" * 256 + b"{" + b'"a":' * 0 + b"}" + b"]" * 256).startswith(b"[[")
    ok = b'{"a":' * 511 + b"[]" + b"}" * 511
    assert canon(ok) == ok
    assert "513 levels deep" in refusal(b"[" + ok + b"]").message


def test_brackets_inside_strings_do_not_count_as_nesting():
    data = b'["' + b"[{" * 5000 + b'\\"[[["]'
    assert canon(data) == data


# --- size limits ---------------------------------------------------------------------------


def test_declared_size_over_the_limit_is_refused_before_reading(monkeypatch):
    ctx = MemoryContext(b"[1]", job_type="JSON_CANONICALIZE", input_size=10**12)
    with pytest.raises(ProcessorError) as exc:
        get_processor("JSON_CANONICALIZE").run(ctx)
    assert exc.value.code == "input_too_large"
    assert "1000000000000 bytes" in exc.value.message
    assert ctx.progress_calls == []


def test_actual_size_over_the_limit_is_refused_while_reading(monkeypatch):
    from processors import conf

    monkeypatch.setattr(conf, "json_max_bytes", lambda: 10)
    with pytest.raises(ProcessorError) as exc:
        run_processor(
            "JSON_CANONICALIZE",
            b"[" + b"1," * 20 + b"1]",
            input_size=5,
            chunked_reads=4,
        )
    assert exc.value.code == "input_too_large"
    assert "more than 12 bytes" in exc.value.message


# --- result, chunking, cancellation ------------------------------------------------------------


def test_result_describes_the_canonical_output():
    result, ctx = run_processor("JSON_CANONICALIZE", b'{"b": [1, 2.0], "a": "x"}')
    out = b'{"a":"x","b":[1,2]}'
    assert ctx.outputs == {"canonical.json": out}
    assert ctx.content_types == {"canonical.json": "application/json"}
    assert result == {
        "sha256": hashlib.sha256(out).hexdigest(),
        "input_bytes": 25,
        "output_bytes": len(out),
        "output": "canonical.json",
        "mode": "document",
    }


@pytest.mark.parametrize("chunked", [1, 2, 3, 7])
def test_chunking_does_not_change_the_output(chunked):
    data = '{"é": [1.5, "\U0001f600"], "a": {"z": null, "y": true}}'.encode()
    assert canon(data, chunked_reads=chunked) == canon(data)


def test_cancellation_commits_no_output():
    ctx = MemoryContext(b"[1, 2, 3]", job_type="JSON_CANONICALIZE", chunked_reads=2)
    ctx.cancel()
    with pytest.raises(Cancelled):
        get_processor("JSON_CANONICALIZE").run(ctx)
    assert ctx.outputs == {}


# --- JSON Lines ----------------------------------------------------------------------------


def jsonl(data: bytes, **kwargs) -> tuple[dict, bytes]:
    result, ctx = run_processor("JSON_CANONICALIZE", data, {"mode": "jsonl"}, **kwargs)
    return result, ctx.outputs["canonical.jsonl"]


def test_jsonl_writes_one_canonical_document_per_line_and_skips_blank_lines():
    result, out = jsonl(b'{"b":1,"a":2}\r\n\n  \n[1.0, 1e21]\n"x"')
    assert out == b'{"a":2,"b":1}\n[1,1e+21]\n"x"\n'
    assert result == {
        "sha256": hashlib.sha256(out).hexdigest(),
        "input_bytes": 34,
        "output_bytes": len(out),
        "output": "canonical.jsonl",
        "mode": "jsonl",
        "documents": 3,
    }


def test_jsonl_error_names_the_input_line():
    with pytest.raises(ProcessorError) as exc:
        jsonl(b'{"a":1}\n\n{"a":1,"a":2}\n')
    assert exc.value.message == "Line 3: duplicate object key 'a'"
    with pytest.raises(ProcessorError) as exc:
        jsonl(b"[1]\n[2,\n")
    assert exc.value.message.startswith("Line 2, column 4: invalid JSON")


def test_jsonl_line_limit_is_enforced_without_reading_the_whole_line(monkeypatch):
    from processors import conf

    monkeypatch.setattr(conf, "json_max_line_bytes", lambda: 100)
    ctx = MemoryContext(b"[1]\n" + b" " * 10_000, {"mode": "jsonl"}, chunked_reads=64)
    with pytest.raises(ProcessorError) as exc:
        get_processor("JSON_CANONICALIZE").run(ctx)
    assert (
        exc.value.message
        == "Line 2 is longer than 100 bytes (JSON_CANONICALIZE_MAX_LINE_BYTES)"
    )
    assert max(ctx.progress_calls) < 300
    assert ctx.aborted == ["canonical.jsonl"]
    assert ctx.outputs == {}


@pytest.mark.parametrize("chunked", [1, 2, 5])
def test_jsonl_chunking_does_not_change_the_output(chunked):
    data = '{"é":1}\n\n[0.5]\r\n{"\U0001f600":[]}'.encode()
    assert jsonl(data, chunked_reads=chunked) == jsonl(data)


def test_jsonl_deep_line_is_refused_with_its_line():
    with pytest.raises(ProcessorError) as exc:
        jsonl(b"[]\n" + b"[" * 5000 + b"]" * 5000)
    assert exc.value.message.startswith("Line 2: nesting is 5000 levels deep")


# --- agreement with the rfc8785 package ------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_output_matches_the_rfc8785_package(value):
    text = json.dumps(value, ensure_ascii=bool(hash(str(value)) & 1))
    assert canon(text.encode()) == rfc8785.dumps(json.loads(text))


def nesting(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


tricky_text = st.text(alphabet='[]{}"\\a', max_size=6)
nested_values = st.recursive(
    st.none() | tricky_text | st.integers(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(tricky_text, children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=nested_values, block=st.integers(min_value=1, max_value=9))
def test_depth_scan_ignores_brackets_in_strings_across_block_boundaries(value, block):
    from processors import json_canonicalize

    data = json.dumps(value).encode()
    original = json_canonicalize._DEPTH_BLOCK
    json_canonicalize._DEPTH_BLOCK = block
    try:
        assert json_canonicalize.max_depth(data) == nesting(value)
    finally:
        json_canonicalize._DEPTH_BLOCK = original


def test_a_20_mb_single_line_document_is_canonicalized():
    data = b'{"k": "' + b"x" * (20 * 1024 * 1024) + b'", "a": 1}'
    out = canon(data)
    assert out.startswith(b'{"a":1,"k":"xxx')
    assert len(out) == len(data) - 3  # three spaces dropped
