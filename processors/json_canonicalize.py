"""JSON_CANONICALIZE: RFC 8785 (JSON Canonicalization Scheme) output, byte for byte.

Parsing is json.loads with hooks that enforce what JCS needs and plain JSON allows:
no duplicate keys, no NaN/Infinity, no number that would silently change value, no
lone UTF-16 surrogate. Numbers come out of the parser already in a form whose repr()
is their ECMAScript form and keys sort in C (see ``_Hooks``), so the C JSON encoder
writes the output. The only values it cannot print the ECMAScript way are non-zero
numbers below 1e-4: they pass through it as marker strings that are unquoted
afterwards (``_TINY_MARK``), unless the document itself holds a U+0000 escape; then it
is written by ``jcs_dumps`` (pure Python).

Number rule (documented in docs/processors.md): an integer literal (no fraction, no
exponent) must be exactly representable as an IEEE 754 double: every |n| <= 2**53, and
above that only the integers a double holds exactly (e.g. 2**60); 9007199254740993 is
refused rather than rounded. Literals with a fraction or exponent are rounded to the
nearest double as RFC 8785 prescribes; one that overflows to infinity is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from processors import conf
from processors._streams import count_lines, iter_chunks
from processors.base import Processor, ProcessorContext, ProcessorError
from processors.registry import register

PARAMS_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "mode": {
            "type": "string",
            "enum": ["document", "jsonl"],
            "default": "document",
            "description": "document: the input is one JSON text. jsonl: one JSON text per line.",
        },
    },
    "additionalProperties": False,
}

_UTF8_BOM = b"\xef\xbb\xbf"
_MAX_SAFE = 2**53
_SHORT_INT_DIGITS = 15  # any integer literal this short is below 2**53 (9.007e15)

# --- number formatting ------------------------------------------------------------------


def es_number(f: float) -> str:
    """ECMAScript Number::toString(f) for finite f (RFC 8785 section 3.2.2.3).

    repr() gives the shortest digits that round-trip, which is also what ECMAScript
    picks; only the placement of the decimal point and exponent differs.
    """
    if f == 0:
        return "0"  # also -0
    text = repr(f)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    int_part, _, frac = mantissa.partition(".")
    all_digits = int_part + frac
    stripped = all_digits.lstrip("0")
    # value = 0.<digits> * 10**n
    n = (
        len(int_part)
        + (int(exp_text) if exp_text else 0)
        - (len(all_digits) - len(stripped))
    )
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    exp = f"e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + (digits if k == 1 else digits[0] + "." + digits[1:]) + exp


# --- parsing ---------------------------------------------------------------------------


def _utf16_key(pair: tuple[str, Any]) -> bytes:
    return pair[0].encode("utf-16-be", "surrogatepass")


class _Hooks:
    """json.loads hooks for one document; ``python_only`` set when the fast writer
    cannot print a number the ECMAScript way."""

    def __init__(self, utf16_sort: bool, tiny_marks: bool = False) -> None:
        self.python_only = False
        # Code point order equals UTF-16 order unless a key holds a character beyond the
        # BMP; the caller knows from one scan of the text whether any can be there.
        self.utf16_sort = utf16_sort
        # True when no string of the document can hold U+0000 (the text has no \u0000
        # escape): numbers below 1e-4 then travel through the C writer as marker strings.
        self.tiny_marks = tiny_marks
        self.marked = False

    def object_pairs(self, pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise _Invalid(f"duplicate object key {key!r}")
                seen.add(key)
        if self.utf16_sort and len(pairs) > 1:
            keys = "".join(obj)
            if keys.isascii() or max(keys) < "\U00010000":
                # No key of this object lies beyond the BMP: code point order is its
                # UTF-16 order, and a plain sort runs in C.
                return {key: obj[key] for key in sorted(obj)}
            pairs.sort(key=_utf16_key)
            return dict(pairs)
        # Otherwise code point order is UTF-16 order, and the writer sorts (in C).
        return obj

    def parse_int(self, text: str) -> int | float:
        if len(text) <= _SHORT_INT_DIGITS:
            return int(text)
        digits = len(text.lstrip("-"))
        if digits > 310:  # beyond 1.8e308 even before converting
            raise _Invalid(f"integer {_clip(text)} is too large for an IEEE 754 double")
        n = int(text)
        if -_MAX_SAFE <= n <= _MAX_SAFE:
            return n
        try:
            f = float(n)
        except OverflowError:
            raise _Invalid(
                f"integer {_clip(text)} is too large for an IEEE 754 double"
            ) from None
        if int(f) != n:
            raise _Invalid(
                f"integer {_clip(text)} cannot be represented exactly as an IEEE 754 double "
                f"(nearest is {es_number(f)}); quote it as a string to keep every digit"
            )
        return self._printable(f)

    def parse_float(self, text: str) -> int | float:
        f = float(text)
        if math.isinf(f):
            raise _Invalid(
                f"number {_clip(text)} is out of range for an IEEE 754 double"
            )
        return self._printable(f)

    def _printable(self, f: float) -> int | float:
        """Return a value whose repr() already is its ECMAScript form, when one exists."""
        if f.is_integer() and abs(f) < 1e21:
            # ECMAScript prints these without a decimal point; above 2**53 with the
            # shortest digits padded by zeros (2**60 -> 1152921504606847000).
            return int(f) if abs(f) <= _MAX_SAFE else int(es_number(f))
        if 0 < abs(f) < 1e-4:
            # repr "1e-05" vs ECMAScript "0.00001": the C writer would print it wrong.
            if self.tiny_marks:
                self.marked = True
                return _TINY_MARK + es_number(f)
            self.python_only = True
        return f

    @staticmethod
    def constant(name: str) -> None:
        raise _Invalid(f"{name} is not valid JSON (RFC 8785 forbids NaN and Infinity)")


class _Invalid(ValueError):
    """Raised inside json.loads hooks; turned into a ProcessorError with a location."""


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "..."


# --- serialization ---------------------------------------------------------------------

_ESCAPE = json.encoder.encode_basestring  # C: escapes ", \\ and U+0000..U+001F only


def jcs_dumps(value: Any, *, presorted: bool = False) -> str:
    """Pure-Python JCS writer for values parsed with ``_Hooks``; sorts keys by code
    point unless ``presorted`` (keys already in UTF-16 order)."""
    out: list[str] = []
    _write(value, out, presorted)
    return "".join(out)


def _write(value: Any, out: list[str], presorted: bool) -> None:
    if isinstance(value, str):
        out.append(_ESCAPE(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(es_number(value))
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, presorted)
        out.append("]")
    else:
        out.append("{")
        items = value.items() if presorted else sorted(value.items())
        for i, (key, item) in enumerate(items):
            out.append("," if i else "")
            out.append(_ESCAPE(key))
            out.append(":")
            _write(item, out, presorted)
        out.append("}")


# sort_keys: code point order, which is UTF-16 order unless _Hooks.utf16_sort (then
# the hook has already ordered the keys and sorting again would undo it).
_FAST_SORTING = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    allow_nan=False,
    check_circular=False,
    sort_keys=True,
)
_FAST_PRESORTED = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    allow_nan=False,
    check_circular=False,
)


# A number below 1e-4 is parsed to this marker + its ECMAScript text; the C writer
# escapes U+0000, so each one comes out as "\u0000<text>", which is then unquoted.
# Only used when the document has no U+0000 of its own, so nothing else can match.
_TINY_MARK = "\x00"
_TINY_WRITTEN = re.compile(r'"\\u0000([-+.e0-9]+)"')


def _serialize(value: Any, hooks: _Hooks) -> str:
    if hooks.python_only:
        return jcs_dumps(value, presorted=hooks.utf16_sort)
    out = (_FAST_PRESORTED if hooks.utf16_sort else _FAST_SORTING).encode(value)
    return _TINY_WRITTEN.sub(r"\1", out) if hooks.marked else out


# --- depth check -------------------------------------------------------------------------

_QUOTE, _BACKSLASH = 0x22, 0x5C
_DEPTH_BLOCK = 4 * 1024 * 1024  # bounds the position arrays, whatever the input size


def max_depth(data: bytes) -> int:
    """Deepest [/{ nesting outside strings, found without recursion (so a 100k-deep
    input costs one linear pass instead of a RecursionError inside json).

    Vectorized like CSV_ROW_COUNT: unescaped quotes toggle "in string", brackets outside
    strings step the level. A quote is escaped when an odd run of backslashes precedes
    it; the run and the string state carry over from one block to the next.
    """
    deepest = level = 0
    in_string = 0
    carry = 0  # backslashes ending the previous block
    for start in range(0, len(data), _DEPTH_BLOCK):
        a = np.frombuffer(
            data, np.uint8, count=min(_DEPTH_BLOCK, len(data) - start), offset=start
        )
        quotes = np.flatnonzero(a == _QUOTE)
        backslashes = np.flatnonzero(a == _BACKSLASH)
        if quotes.size and (backslashes.size or carry):
            quotes = quotes[~_escaped(quotes, backslashes, carry)]
        folded = a & 0xDF  # '[' 0x5B and '{' 0x7B fold together, as do ']' and '}'
        opening = folded == 0x5B
        brackets = np.flatnonzero(opening | (folded == 0x5D))
        if brackets.size:
            outside = ((in_string + np.searchsorted(quotes, brackets)) & 1) == 0
            kept = brackets[outside]
            if kept.size:
                steps = np.where(opening[kept], 1, -1).astype(np.int32)
                sums = np.cumsum(steps) + level
                deepest = max(deepest, int(sums.max()))
                level = int(sums[-1])
        in_string ^= quotes.size & 1
        carry = _trailing_run(a, backslashes, carry)
    return deepest


def _run_starts(backslashes: np.ndarray) -> np.ndarray:
    """For each backslash position, where its run of consecutive backslashes starts."""
    new_run = np.ones(backslashes.size, dtype=bool)
    new_run[1:] = np.diff(backslashes) != 1
    heads = np.flatnonzero(new_run)
    return np.repeat(backslashes[heads], np.diff(np.append(heads, backslashes.size)))


def _escaped(quotes: np.ndarray, backslashes: np.ndarray, carry: int) -> np.ndarray:
    run = np.zeros(quotes.size, dtype=np.int64)
    if backslashes.size:
        starts = _run_starts(backslashes)
        last = np.searchsorted(backslashes, quotes) - 1
        safe = np.maximum(last, 0)
        touching = (last >= 0) & (backslashes[safe] == quotes - 1)
        run = np.where(touching, quotes - starts[safe], 0)
        run += np.where(touching & (starts[safe] == 0), carry, 0)
    if carry and quotes[0] == 0:
        run[0] = carry
    return (run & 1) == 1


def _trailing_run(a: np.ndarray, backslashes: np.ndarray, carry: int) -> int:
    if not backslashes.size or backslashes[-1] != a.size - 1:
        return 0
    start = int(_run_starts(backslashes)[-1])
    return a.size - start + (carry if start == 0 else 0)


# --- one JSON text ---------------------------------------------------------------------


class _Located(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def canonicalize(data: bytes, max_depth_allowed: int) -> bytes:
    """One JSON text (UTF-8 bytes) -> its canonical form. Raises _Located or _Invalid."""
    data = data.removeprefix(_UTF8_BOM)  # RFC 8259 lets a parser ignore a BOM
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = count_lines(data[: exc.start]) + 1
        raise _Located(
            f"invalid UTF-8 at byte offset {exc.start}: {exc.reason} "
            f"{exc.object[exc.start : exc.end]!r}",
            line,
            _column(data, exc.start),
        ) from None
    # Reaching depth d takes d opening brackets; most inputs (and every short JSON
    # Lines record) have fewer brackets than the limit, so the scan is skipped.
    brackets = data.count(b"[") + data.count(b"{")
    depth = max_depth(data) if brackets > max_depth_allowed else 0
    if depth > max_depth_allowed:
        raise _Invalid(
            f"nesting is {depth} levels deep; the limit is {max_depth_allowed} "
            "(JSON_CANONICALIZE_MAX_DEPTH)"
        )
    hooks = _Hooks(
        utf16_sort=max(text, default=" ") >= "\ud800" or bool(_HIGH_ESCAPE.search(text)),
        tiny_marks="\\u0000" not in text,
    )
    try:
        value = json.loads(
            text,
            object_pairs_hook=hooks.object_pairs,
            parse_int=hooks.parse_int,
            parse_float=hooks.parse_float,
            parse_constant=hooks.constant,
        )
        out = _serialize(value, hooks)
    except json.JSONDecodeError as exc:
        raise _Located(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        # Only reachable if the depth setting exceeds what the interpreter can recurse.
        raise _Invalid(
            "nesting is too deep for this worker; lower JSON_CANONICALIZE_MAX_DEPTH"
        ) from None
    try:
        return out.encode("utf-8")
    except UnicodeEncodeError:
        raise _lone_surrogate(text) from None


def _column(data: bytes, offset: int) -> int:
    start = max(data.rfind(b"\n", 0, offset), data.rfind(b"\r", 0, offset)) + 1
    return len(data[start:offset].decode("utf-8", "replace")) + 1


_HIGH_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u([dD][89a-fA-F][0-9a-fA-F]{2})")


def _lone_surrogate(text: str) -> _Located | _Invalid:
    matches = list(_SURROGATE_ESCAPE.finditer(text))
    i = 0
    while i < len(matches):
        m = matches[i]
        high = int(m.group(1), 16) < 0xDC00
        nxt = matches[i + 1] if i + 1 < len(matches) else None
        paired = (
            high
            and nxt is not None
            and nxt.start(1) - 2 == m.end()
            and int(nxt.group(1), 16) >= 0xDC00
        )
        if not paired:
            start = m.start(1) - 2
            line = text.count("\n", 0, start) + 1
            column = start - text.rfind("\n", 0, start)
            return _Located(
                f"lone UTF-16 surrogate \\u{m.group(1)} in a string", line, column
            )
        i += 2
    return _Invalid("a string contains a lone UTF-16 surrogate")


# --- modes -----------------------------------------------------------------------------


def _run_document(ctx: ProcessorContext) -> dict:
    limit = conf.json_max_bytes()
    too_big = (
        f"The input is {{size}} bytes; JSON_CANONICALIZE document mode accepts at most {limit} "
        "bytes (JSON_CANONICALIZE_MAX_BYTES). Use mode=jsonl for one document per line."
    )
    if ctx.input_size > limit:
        raise ProcessorError(
            too_big.format(size=ctx.input_size), code="input_too_large"
        )
    parts: list[bytes] = []
    read = 0
    for chunk in iter_chunks(ctx):
        read += len(chunk)
        if read > limit:  # the declared size was wrong; stop before holding more
            raise ProcessorError(
                too_big.format(size=f"more than {read}"), code="input_too_large"
            )
        parts.append(chunk)
    data = b"".join(parts)
    del parts
    try:
        canonical = canonicalize(data, conf.json_max_depth())
    except _Located as exc:
        raise ProcessorError(
            f"Line {exc.line}, column {exc.column}: {exc.message}",
            code="invalid_json",
            details={"line": exc.line, "column": exc.column},
        ) from None
    except _Invalid as exc:
        raise ProcessorError(str(exc), code="invalid_json") from None
    with ctx.open_output("canonical.json", "application/json") as out:
        out.write(canonical)
    return {
        "sha256": hashlib.sha256(canonical).hexdigest(),
        "input_bytes": read,
        "output_bytes": len(canonical),
        "output": "canonical.json",
        "mode": "document",
    }


class _Lines:
    """(line number, line without its LF) for every line; memory bounded by ``limit``."""

    def __init__(self, ctx: ProcessorContext, limit: int) -> None:
        self._ctx = ctx
        self._limit = limit
        self.bytes_read = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        pending = b""
        number = 0
        for chunk in iter_chunks(self._ctx):
            self.bytes_read += len(chunk)
            pieces = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
            pending = pieces.pop()
            for piece in pieces:
                number += 1
                _check_line_size(len(piece), number, self._limit)
                yield number, piece
            # Checked per chunk, so a line with no end is refused after ~limit bytes.
            _check_line_size(len(pending), number + 1, self._limit)
        if pending:
            yield number + 1, pending


def _check_line_size(size: int, number: int, limit: int) -> None:
    if size > limit:
        raise ProcessorError(
            f"Line {number} is longer than {limit} bytes (JSON_CANONICALIZE_MAX_LINE_BYTES)",
            code="line_too_long",
            details={"line": number},
        )


def _run_jsonl(ctx: ProcessorContext) -> dict:
    depth = conf.json_max_depth()
    digest = hashlib.sha256()
    documents = written = 0
    lines = _Lines(ctx, conf.json_max_line_bytes())
    with ctx.open_output("canonical.jsonl", "application/x-ndjson") as out:
        for number, line in lines:
            if number == 1 and line.startswith(_UTF8_BOM):
                line = line[len(_UTF8_BOM) :]
            if not line.strip(b" \t\r"):
                continue  # blank lines carry no document
            try:
                canonical = canonicalize(line, depth) + b"\n"
            except _Located as exc:
                raise ProcessorError(
                    f"Line {number}, column {exc.column}: {exc.message}",
                    code="invalid_json",
                    details={"line": number, "column": exc.column},
                ) from None
            except _Invalid as exc:
                raise ProcessorError(
                    f"Line {number}: {exc}",
                    code="invalid_json",
                    details={"line": number},
                ) from None
            out.write(canonical)
            digest.update(canonical)
            documents += 1
            written += len(canonical)
    return {
        "sha256": digest.hexdigest(),
        "input_bytes": lines.bytes_read,
        "output_bytes": written,
        "output": "canonical.jsonl",
        "mode": "jsonl",
        "documents": documents,
    }


def run(ctx: ProcessorContext) -> dict:
    if ctx.params.get("mode", "document") == "jsonl":
        return _run_jsonl(ctx)
    return _run_document(ctx)


PROCESSOR = register(
    Processor(
        job_type="JSON_CANONICALIZE",
        version="1.0",
        title="JSON canonicalization (RFC 8785)",
        description=(
            "Rewrites JSON in RFC 8785 canonical form (sorted keys, ECMAScript numbers, "
            "minimal escaping) to canonical.json, or one document per line to "
            "canonical.jsonl, and returns the SHA-256 of the canonical bytes."
        ),
        params_schema=PARAMS_SCHEMA,
        run=run,
        # jsonl mode has no total size limit and parses at Python speed.
        soft_time_limit=900,
        time_limit=960,
    )
)
