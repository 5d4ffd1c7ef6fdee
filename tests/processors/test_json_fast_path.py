"""JSON_CANONICALIZE fast path (msgspec): the same bytes as the rfc8785 package and as the
exact path, the same refusals, and memory bounded by the input (RSS from /proc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors import ProcessorError, json_canonicalize
from processors.json_canonicalize import es_number
from processors.testing import run_processor

ROOT = Path(__file__).resolve().parents[2]
MAX_SAFE = 2**53


def canon(data: bytes) -> bytes:
    _, ctx = run_processor("JSON_CANONICALIZE", data)
    return ctx.outputs["canonical.json"]


def canon_lines(data: bytes) -> bytes:
    _, ctx = run_processor("JSON_CANONICALIZE", data, {"mode": "jsonl"})
    return ctx.outputs["canonical.jsonl"]


def refusal(data: bytes, **params) -> ProcessorError:
    with pytest.raises(ProcessorError) as exc:
        run_processor("JSON_CANONICALIZE", data, params)
    return exc.value


# --- generated documents against rfc8785 ---------------------------------------------------

BOUNDARY_FLOATS = [
    1e21, 9.999999999999999e20, 1.0000000000000001e21, 1e-7, 9.999999999999999e-8, 1.0000000000000001e-7,
    1e-6, 1e-5, 9.99999e-6, 1.5e-5, 1e-4, 5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
    1.7976931348623157e308, 2.0**53, 2.0**53 + 2, 2.0**60, 2.0**70, 1e15, 1e16, 0.0, -0.0, 0.1, 333333333.3333333,
]
numbers = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(BOUNDARY_FLOATS).flatmap(lambda f: st.sampled_from([f, -f]))
    | st.floats(min_value=1e19, max_value=1e23)
    | st.floats(min_value=1e-8, max_value=1e-4)
    | st.floats(min_value=-2.2250738585072014e-308, max_value=2.2250738585072014e-308)  # subnormals
    | st.integers(min_value=-(2**70), max_value=2**70).map(float)  # integral, beyond 2**53 too
    | st.integers(min_value=-MAX_SAFE + 1, max_value=MAX_SAFE - 1)  # the rfc8785 package's domain
)
# Keys mixing characters beyond the BMP with U+E000..U+FFFF, where UTF-16 order and code
# point order disagree, plus characters that must be escaped.
key_chars = st.sampled_from(["a", "B", "\ue000", "\uffff", "\ufb33", "\U0001f600", "\U00010000", "\u20ac", "é",
                             "\x00", "\x1f", '"', "\\", "\n", "/", "\u2028", ":"])
keys = st.text(alphabet=key_chars, max_size=4)
strings = st.text(alphabet=key_chars, max_size=6) | st.text(max_size=6)
documents = st.recursive(
    st.none() | st.booleans() | numbers | strings,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)


def text_of(value, ascii_only: bool, indent: int | None) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only, indent=indent, allow_nan=False).encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=documents, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_documents_match_the_rfc8785_package(value, ascii_only, indent):
    assert canon(text_of(value, ascii_only, indent)) == rfc8785.dumps(value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(documents, min_size=1, max_size=8), ascii_only=st.booleans())
def test_json_lines_match_the_rfc8785_package(values, ascii_only):
    data = b"\n".join(text_of(v, ascii_only, None) for v in values)
    assert canon_lines(data) == b"".join(rfc8785.dumps(v) + b"\n" for v in values)


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(min_value=1, max_value=512), key=keys)
def test_deep_documents_up_to_the_limit_match_rfc8785(depth, key):
    value: object = [1.5e-7]
    for level in range(depth - 1):
        value = {key: value} if level % 2 else [value, 1e21]
    assert canon(json.dumps(value).encode()) == rfc8785.dumps(value)


@settings(max_examples=60, deadline=None)
@given(f=st.floats(min_value=1e-5, max_value=2.0**53, exclude_max=True))
def test_msgspec_prints_non_integral_floats_of_the_fast_range_as_ecmascript(f):
    # The float hook hands these to msgspec's writer unchanged; outside this range (and for
    # integral values) it writes the ECMAScript text itself.
    for x in (f, -f):
        if not x.is_integer():
            assert msgspec.json.encode(x).decode() == es_number(x)


# --- lone surrogates and other refusals --------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    before=st.text(alphabet="ab\U0001f600", max_size=3),
    unit=st.integers(min_value=0xD800, max_value=0xDFFF),
    after=st.sampled_from(["", "x", "\\u0041", "\\ud800", "\\udfff"]),
    as_key=st.booleans(),
    mode=st.sampled_from(["document", "jsonl"]),
)
def test_lone_surrogates_are_refused(before, unit, after, as_key, mode):
    if unit < 0xDC00 and after.startswith("\\udfff"):
        after = "\\u0041"  # that would pair it
    string = f'"{before}\\u{unit:04x}{after}"'
    text = f'{{{string}: 1}}' if as_key else f'[1, {string}]'
    error = refusal(text.encode(), mode=mode)
    assert error.code == "invalid_json"
    assert "lone UTF-16 surrogate" in error.message


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("9007199254740992", "9007199254740992"),
        ("-9007199254740992", "-9007199254740992"),
        ("1152921504606846976", "1152921504606847000"),  # 2**60, exact
        ("1180591620717411303424", "1.1805916207174113e+21"),  # 2**70, exact
        ("1152921504606846976.0", "1152921504606847000"),  # a float literal: rounded
        ("1152921504606847000.0", "1152921504606847000"),
        ("1e20", "100000000000000000000"),
    ],
)
def test_integers_beyond_2_53_take_the_ecmascript_form(literal, expected):
    data = f'{{"n": {literal}, "s": ",12345678901234567890,", "t": [{literal}]}}'.encode()
    assert canon(data) == f'{{"n":{expected},"s":",12345678901234567890,","t":[{expected}]}}'.encode()
    assert canon_lines(data + b"\n" + data) == canon(data) + b"\n" + canon(data) + b"\n"


@pytest.mark.parametrize("mode", ["document", "jsonl"])
def test_an_inexact_integer_beside_a_float_printed_alike_is_refused(mode):
    # 1152921504606846976.0 is written 1152921504606847000, like the literal beside it,
    # which a double cannot hold: counting tokens must still catch the literal.
    error = refusal(b"[1152921504606846976.0, 1152921504606847000]", mode=mode)
    assert "integer 1152921504606847000 cannot be represented exactly" in error.message


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (b'{"a": 1, "a": 2}', "a"),
        (b'{"a:": 1, "a\\u003a": 2}', "a:"),
        (b'{"x": {"\\u003A": 1, ":": 2}}', ":"),
        (b'[{"k": [1, {"a": 1}], "k": 2}]', "k"),
    ],
)
def test_duplicate_keys_are_refused_even_when_escaped(data, key):
    assert refusal(data).message == f"duplicate object key {key!r}"
    assert f"duplicate object key {key!r}" in refusal(data, mode="jsonl").message


def test_escaped_colons_without_duplicates_pass():
    assert canon(b'{"\\u003a": 1, "b": ":"}') == b'{":":1,"b":":"}'


def test_mixed_utf16_order_keys_are_sorted_by_utf16_code_units():
    data = '{"\ufb01": 1, "\U0001f600": 2, "\ue000": {"\uffff": 1, "\U00010000": 2}, "\u20ac": 3}'.encode()
    expected = '{"\u20ac":3,"\U0001f600":2,"\ue000":{"\U00010000":2,"\uffff":1},"\ufb01":1}'.encode()
    assert canon(data) == expected
    assert canon_lines(data) == expected + b"\n"


# --- fast path and exact path agree on every input ---------------------------------------


def outcome(fn, data: bytes):
    try:
        return fn(data, 512)
    except json_canonicalize._Located as exc:
        return ("located", exc.message, exc.line, exc.column)
    except json_canonicalize._Invalid as exc:
        return ("invalid", str(exc))


near_json = st.builds(
    lambda text, cuts, junk: _mutate(text, cuts, junk),
    documents.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=3),
    st.sampled_from(["", ",", "]", "}", '"', "\\", "\\ud800", "1e400", "NaN", "\x01", "\xff", "0", ":", " ",
                     "99999999999999999999", '{"a":1,"a":2}']),
)


def _mutate(text: str, cuts: list[int], junk: str) -> bytes:
    data = text.encode()
    for cut in cuts:
        at = cut % (len(data) + 1)
        data = data[:at] + junk.encode("utf-8", "surrogateescape") + data[at + 1 :]
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=near_json)
def test_the_fast_path_accepts_and_refuses_exactly_what_the_exact_path_does(data):
    data = data.removeprefix(b"\xef\xbb\xbf")
    assert outcome(json_canonicalize.canonicalize, data) == outcome(json_canonicalize._exact, data)


# --- memory ---------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import hashlib, json, sys
    from contextlib import contextmanager
    from processors import get_processor

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    class Ctx:
        job_id = "rss"
        input_name = "input"
        def __init__(self, path, size, params):
            self.input, self.input_size, self.params = open(path, "rb"), size, params
            self.digest = hashlib.sha256()
        @contextmanager
        def open_output(self, name, content_type="application/octet-stream"):
            class Sink:
                def write(_, data):
                    self.digest.update(data)
            yield Sink()
        def progress(self, done):
            pass

    path, size, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    processor = get_processor("JSON_CANONICALIZE")
    ctx = Ctx(path, size, processor.validate_params({"mode": mode}))
    before = status("VmRSS")
    processor.run(ctx)
    print(json.dumps({"before": before, "peak": status("VmHWM")}))
    """
)


def run_child(tmp_path, data: bytes, mode: str) -> int:
    """RSS the processor adds to its process while it runs once on ``data``."""
    path = tmp_path / "input"
    path.write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(len(data)), mode],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True, text=True,
    ).stdout
    got = json.loads(out)
    return got["peak"] - got["before"]


def records(n: int) -> list[dict]:
    return [
        {"id": i, "name": f"name {i} ünï 😀", "value": [i * 1.5, i / 7, 1e-7 * i, 2**40 + i],
         "tags": ["a", "b\n", "c\""], "nested": {"x": None, "y": True, "z": {"k": i % 10}}}
        for i in range(n)
    ]


@pytest.mark.slow
def test_document_mode_peak_rss_stays_within_8x_the_input(tmp_path):
    data = json.dumps({"records": records(120_000), "v": "1"}, ensure_ascii=False, indent=1).encode()
    assert len(data) > 20 * 2**20
    added = run_child(tmp_path, data, "document")
    assert added <= 8 * len(data), f"{added / len(data):.2f}x the input"


@pytest.mark.slow
def test_json_lines_peak_rss_does_not_grow_with_the_file(tmp_path):
    line_block = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records(20_000))
    small = run_child(tmp_path, line_block, "jsonl")
    large = run_child(tmp_path, line_block * 8, "jsonl")
    assert len(line_block) * 8 > 25 * 2**20
    # Batches of about 1 MiB: the run costs the same tens of MiB whatever the size.
    assert large <= small + 16 * 2**20
    assert large <= 64 * 2**20



@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(
        st.integers(min_value=-(2**64), max_value=2**64) | st.sampled_from(["a,1", ":12345678901234567", "x"]),
        max_size=12,
    ),
    block=st.integers(min_value=1, max_value=40),
)
def test_long_integer_scan_counts_tokens_across_block_boundaries(items, block):
    out = msgspec.json.encode(items)
    expected = sum(1 for v in items if type(v) is int and abs(v) > MAX_SAFE)
    original = json_canonicalize._DEPTH_BLOCK
    json_canonicalize._DEPTH_BLOCK = block
    try:
        assert json_canonicalize._big_int_tokens(out) == expected
    finally:
        json_canonicalize._DEPTH_BLOCK = original
