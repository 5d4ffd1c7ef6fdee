"""JSON_CANONICALIZE: RFC 8785 (JSON Canonicalization Scheme) output, byte for byte.

Fast path: msgspec parses and writes (C, several times json.loads + rfc8785). Its float
hook turns each float literal into what its writer prints the ECMAScript way: an int for
integral values, the float itself where msgspec's shortest digits and ECMAScript's
layout agree (non-integral, 1e-5 <= |x| < 2**53), else ``msgspec.Raw`` ECMAScript text.
Cheap whole-buffer checks say when that output can be trusted:

* duplicate keys (msgspec keeps the last): each member has one ':' outside strings, so
  equal ':' counts in the input and the output prove there was none;
* integer literals beyond 2**53 (printed verbatim by msgspec): found as long integer
  tokens in the output; a walk over the parsed value then checks or rewrites them;
* UTF-16 key order: equals code point order unless keys mix U+E000..U+FFFF with
  characters beyond the BMP, which a byte scan rules out; otherwise the walk re-sorts.

Anything the fast parser refuses goes to the exact path: json.loads with hooks that
enforce what JCS needs and plain JSON allows (no duplicate keys, no NaN/Infinity, no
number that would silently change value, no lone UTF-16 surrogate) and name the error.

Number rule (documented in docs/processors.md): an integer literal (no fraction, no
exponent) must be exactly representable as an IEEE 754 double: every |n| <= 2**53, and
above that only the integers a double holds exactly (e.g. 2**60); 9007199254740993 is
refused rather than rounded. Literals with a fraction or exponent are rounded to the
nearest double as RFC 8785 prescribes; one that overflows to infinity is refused.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
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
        return self._printable(_exact_double(n, text))

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


def _exact_double(n: int, text: str) -> float:
    """The double equal to the integer literal ``n``, or _Invalid naming ``text``."""
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
    return f


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

_QUOTE = 0x22
_DEPTH_BLOCK = 4 * 1024 * 1024  # bounds the arrays, whatever the input size
# Kept for the escape pass: quotes, brackets, backslashes and what may follow a backslash
# (so that "\\n" followed by a closing quote never looks like an escaped quote).
_NOT_ESCAPE_OR_STRUCTURAL = bytes(b for b in range(256) if b not in b'"[]{}\\/bfnrtu')
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'"[]{}')


def max_depth(data: bytes | bytearray) -> int:
    """Deepest [/{ nesting outside strings, found without recursion (so a 100k-deep
    input costs one linear pass instead of a RecursionError inside a parser).

    Only quotes and brackets matter, once escaped backslashes and then escaped quotes
    are gone (removed left to right, as a parser pairs them); what is left of a string
    is its two quotes, and quote parity says which brackets are outside strings. Blocks
    end on a byte that is not a backslash, so no escape straddles two of them.
    """
    escaped_quotes = b'\\"' in data
    deepest = level = 0
    in_string = 0
    start, n = 0, len(data)
    while start < n:
        end = min(start + _DEPTH_BLOCK, n)
        while end < n and data[end - 1] == 0x5C:
            end += 1
        piece = data[start:end]
        if escaped_quotes:
            piece = piece.translate(None, _NOT_ESCAPE_OR_STRUCTURAL)
            piece = piece.replace(b"\\\\", b"").replace(b'\\"', b"")
        a = np.frombuffer(piece.translate(None, _NOT_STRUCTURAL), np.uint8)
        start = end
        if not a.size:
            continue
        # Quotes up to each byte, plus those of earlier blocks: odd means inside a string.
        inside = ((np.cumsum(a == _QUOTE, dtype=np.int32) + in_string) & 1).astype(bool)
        folded = a & 0xDF  # '[' 0x5B and '{' 0x7B fold together, as do ']' and '}'
        steps = (folded == 0x5B).astype(np.int32) - (folded == 0x5D)
        steps[inside] = 0
        sums = np.cumsum(steps, dtype=np.int32) + level
        deepest = max(deepest, int(sums.max()))
        level = int(sums[-1])
        in_string = int(inside[-1])
    return deepest


def _check_depth(data: bytes | bytearray, max_depth_allowed: int) -> None:
    # Reaching depth d takes d opening brackets; most inputs (and every short JSON
    # Lines record) have fewer brackets than the limit, so the scan is skipped.
    if data.count(b"[") + data.count(b"{") <= max_depth_allowed:
        return
    depth = max_depth(data)
    if depth > max_depth_allowed:
        raise _Invalid(
            f"nesting is {depth} levels deep; the limit is {max_depth_allowed} "
            "(JSON_CANONICALIZE_MAX_DEPTH)"
        )


# --- fast path ---------------------------------------------------------------------------


class _Fallback(Exception):
    """The fast path cannot vouch for its output; the exact path decides."""


class _FloatHook:
    """msgspec float_hook: each float literal becomes a value msgspec prints the
    ECMAScript way. ``big`` counts the integral ones written as plain digits beyond
    2**53, so the output scan can tell them from integer literals."""

    __slots__ = ("big",)

    def __init__(self) -> None:
        self.big = 0

    def __call__(self, text: str) -> float | int | msgspec.Raw:
        f = float(text)
        if 1e-5 <= abs(f) < _MAX_SAFE_FLOAT:
            # Here msgspec's shortest round-trip digits in fixed notation are the
            # ECMAScript form (checked against es_number in the tests).
            return int(f) if f.is_integer() else f
        if math.isinf(f):
            raise _Invalid(f"number {_clip(text)} is out of range for an IEEE 754 double")
        if f.is_integer():  # 0, -0.0 and |f| >= 2**53
            if abs(f) <= _MAX_SAFE:
                return int(f)
            if abs(f) < 1e21:
                self.big += 1
        return msgspec.Raw(es_number(f).encode())


_MAX_SAFE_FLOAT = float(_MAX_SAFE)
_SORTED = msgspec.json.Encoder(order="sorted")
_AS_GIVEN = msgspec.json.Encoder()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A parse builds millions of containers and no cycles; the cyclic collector would
    rescan the growing heap many times over (about 3x the parse time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# Maps digits to '0', '[', ',', ':' and '-' to ',' and everything else to 'x': an integer
# token of 16+ digits in compact output then shows as ',' followed by sixteen '0'.
_INT_CLASSES = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x2C if b in b"[,:-" else 0x78 for b in range(256)
)
_LONG_INT = b"," + b"0" * 16
_DIGITS = re.compile(rb"[0-9]+")
_NUMBER_END = frozenset(b",]}")


def _big_int_tokens(out: bytes) -> int:
    """Integer tokens beyond +-2**53 in msgspec's compact output. A match inside a
    string can only add to the count, which sends the document to the walk: safe.
    Classified block by block, so the scan holds no copy of the whole output."""
    count = 0
    if out[:1] and out[:1] in b"-0123456789":
        whole = out.removeprefix(b"-")
        if whole.isdigit() and int(whole) > _MAX_SAFE:
            return 1
    resume = 0  # where the next token may start (after the digits of the last one)
    for block in range(0, len(out), _DEPTH_BLOCK):
        # A token starting in this block is whole in its classified bytes.
        classes = out[block : block + _DEPTH_BLOCK + len(_LONG_INT)].translate(_INT_CLASSES)
        pos = classes.find(_LONG_INT, max(resume - block, 0))
        while pos != -1 and pos < _DEPTH_BLOCK:
            at = block + pos
            end = _DIGITS.match(out, at + 1).end()  # type: ignore[union-attr]
            before = out[at - 1] if out[at] == 0x2D and at else out[at]
            if (
                before in b"[,:"
                and (end == len(out) or out[end] in _NUMBER_END)
                and int(out[at + 1 : end]) > _MAX_SAFE
            ):
                count += 1
            resume = end
            pos = classes.find(_LONG_INT, end - block)
    return count


class _Escapes:
    """Which \\u escapes the text holds, from one pass over its backslashes (any
    backslash counts, escaped or not: a false positive only costs the slower route)."""

    def __init__(self, data: bytes | bytearray) -> None:
        self.high = self.surrogate = self.colon = False
        if b"\\u" not in data:
            return
        whole = np.frombuffer(data, np.uint8)
        # Blocks overlap by the 5 bytes an escape spans, to bound the temporary arrays.
        for start in range(0, max(len(data) - 5, 0), _DEPTH_BLOCK):
            a = whole[start : start + _DEPTH_BLOCK + 5]
            u = np.flatnonzero(a[:-5] == 0x5C)
            u = u[a[u + 1] == 0x75]
            first = a[u + 2] | 0x20  # lower case
            self.high |= bool(((first == 0x65) | (first == 0x66)).any())
            self.surrogate |= bool((first == 0x64).any())
            # \\u003a or \\u003A: a ':' the input does not show as one.
            zeros = u[(a[u + 2] == 0x30) & (a[u + 3] == 0x30) & (a[u + 4] == 0x33)]
            self.colon |= bool(((a[zeros + 5] | 0x20) == 0x61).any())


def _needs_utf16_order(data: bytes | bytearray, escapes: _Escapes) -> bool:
    """Whether code point order may differ from UTF-16 order for some keys: only when
    the text holds both characters beyond the BMP (UTF-8 lead bytes F0-F4, or a
    surrogate escape) and characters U+E000..U+FFFF (lead bytes EE/EF, or \\uE/\\uF)."""
    astral = escapes.surrogate or any(
        lead in data for lead in (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")
    )
    return astral and (escapes.high or b"\xee" in data or b"\xef" in data)


def _same_members(colons: int, out: bytes, escapes: _Escapes) -> bool:
    """No key was dropped as a duplicate: one ':' per member in the input (``colons``
    of them) and in the output, strings aside, and strings keep their ':' (msgspec
    never escapes one). An input that escapes ':' as \\u003a cannot be judged so."""
    return not escapes.colon and colons == out.count(b":")


def _walk(value: Any, utf16: bool) -> Any:
    """A copy with integers beyond 2**53 checked and written the ECMAScript way and,
    if ``utf16``, every object's keys in UTF-16 order (then written as given)."""
    kind = type(value)
    if kind is dict:
        items = [(key, _walk(item, utf16)) for key, item in value.items()]
        if utf16:
            items.sort(key=_utf16_key)
        return dict(items)
    if kind is list:
        return [_walk(item, utf16) for item in value]
    if kind is int and not -_MAX_SAFE <= value <= _MAX_SAFE:
        return msgspec.Raw(es_number(_exact_double(value, str(value))).encode())
    return value


def _fast(data: bytes | bytearray, max_depth_allowed: int) -> bytes:
    """Canonical bytes of one JSON text by msgspec, or _Fallback. The byte scans run
    before the parse, while the input is the only large object held."""
    try:
        _check_depth(data, max_depth_allowed)  # also keeps msgspec's recursion short
    except _Invalid:  # reported by the exact path, in its order among other errors
        raise _Fallback from None
    escapes = _Escapes(data)
    utf16 = _needs_utf16_order(data, escapes)
    colons = data.count(b":")
    hook = _FloatHook()
    try:
        with _gc_paused():
            value = msgspec.json.Decoder(float_hook=hook).decode(data)
            if utf16:
                value = _walk(value, utf16=True)
            out = (_AS_GIVEN if utf16 else _SORTED).encode(value)
            if not utf16 and _big_int_tokens(out) != hook.big:
                out = _SORTED.encode(_walk(value, utf16=False))
            del value
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError, RecursionError):
        raise _Fallback from None
    except _Invalid:
        raise _Fallback from None
    if not _same_members(colons, out, escapes):
        raise _Fallback
    return out


def _fast_lines(lines: list[bytes], max_depth_allowed: int) -> bytes:
    """Canonical form of each JSON text, each followed by LF; checks run once over the
    whole batch. _Fallback if any line needs a closer look."""
    joined = b"\n".join(lines)
    try:
        # Levels add up across lines only if some line is unbalanced, and then invalid.
        _check_depth(joined, max_depth_allowed)
    except _Invalid:
        raise _Fallback from None
    escapes = _Escapes(joined)
    if _needs_utf16_order(joined, escapes):
        raise _Fallback
    hook = _FloatHook()
    decode = msgspec.json.Decoder(float_hook=hook).decode
    encode = _SORTED.encode
    try:
        with _gc_paused():
            out = b"".join([encode(decode(line)) + b"\n" for line in lines])
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError, RecursionError):
        raise _Fallback from None
    except _Invalid:
        raise _Fallback from None
    if _big_int_tokens(out) != hook.big or not _same_members(joined.count(b":"), out, escapes):
        raise _Fallback
    return out


# --- one JSON text ---------------------------------------------------------------------


class _Located(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def canonicalize(data: bytes | bytearray, max_depth_allowed: int) -> bytes:
    """One JSON text (UTF-8 bytes) -> its canonical form. Raises _Located or _Invalid."""
    if data.startswith(_UTF8_BOM):  # RFC 8259 lets a parser ignore a BOM
        data = data[len(_UTF8_BOM) :]
    try:
        return _fast(data, max_depth_allowed)
    except _Fallback:
        return _exact(data, max_depth_allowed)


def _decode(data: bytes | bytearray) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = count_lines(data[: exc.start]) + 1
        raise _Located(
            f"invalid UTF-8 at byte offset {exc.start}: {exc.reason} "
            f"{exc.object[exc.start : exc.end]!r}",
            line,
            _column(data, exc.start),
        ) from None


def _exact(data: bytes | bytearray, max_depth_allowed: int) -> bytes:
    """The reference path: json.loads with hooks, then the C or pure-Python writer.
    A refused input is found by a pass that keeps no parsed value first."""
    text = _decode(data)
    _check_depth(data, max_depth_allowed)
    _validate(text)
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
    except RecursionError:
        # Only reachable if the depth setting exceeds what the interpreter can recurse.
        raise _Invalid(
            "nesting is too deep for this worker; lower JSON_CANONICALIZE_MAX_DEPTH"
        ) from None
    try:
        return out.encode("utf-8")
    except UnicodeEncodeError:
        raise _lone_surrogate(text) or _Invalid(
            "a string contains a lone UTF-16 surrogate"
        ) from None


def _validate(text: str) -> None:
    """Raise the first error the exact path would find; objects and numbers are
    checked and dropped, so a refused input never costs its full parse tree."""
    hooks = _Hooks(utf16_sort=False)

    def pairs(items: list[tuple[str, Any]]) -> None:
        hooks.object_pairs(items)

    def integer(literal: str) -> None:
        hooks.parse_int(literal)

    def number(literal: str) -> None:
        hooks.parse_float(literal)

    try:
        json.loads(
            text,
            object_pairs_hook=pairs,
            parse_int=integer,
            parse_float=number,
            parse_constant=hooks.constant,
        )
    except json.JSONDecodeError as exc:
        raise _Located(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise _Invalid(
            "nesting is too deep for this worker; lower JSON_CANONICALIZE_MAX_DEPTH"
        ) from None
    if _HIGH_ESCAPE.search(text):
        located = _lone_surrogate(text)
        if located is not None:
            raise located


def _column(data: bytes | bytearray, offset: int) -> int:
    start = max(data.rfind(b"\n", 0, offset), data.rfind(b"\r", 0, offset)) + 1
    return len(data[start:offset].decode("utf-8", "replace")) + 1


_HIGH_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u([dD][89a-fA-F][0-9a-fA-F]{2})")


def _lone_surrogate(text: str) -> _Located | None:
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
    return None


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
    # One buffer of the declared size: a list of chunks joined at the end would hold the
    # input twice. A wrong declared size only costs a resize.
    data = bytearray(ctx.input_size)
    read = 0
    for chunk in iter_chunks(ctx):
        if read + len(chunk) > limit:  # the declared size was wrong; stop before holding more
            raise ProcessorError(
                too_big.format(size=f"more than {read + len(chunk)}"), code="input_too_large"
            )
        data[read : read + len(chunk)] = chunk
        read += len(chunk)
    del data[read:]
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


_BATCH_BYTES = 1024 * 1024  # JSON Lines records canonicalized together, about


def _run_jsonl(ctx: ProcessorContext) -> dict:
    depth = conf.json_max_depth()
    digest = hashlib.sha256()
    documents = written = 0
    lines = _Lines(ctx, conf.json_max_line_bytes())
    batch: list[tuple[int, bytes]] = []
    size = 0
    with ctx.open_output("canonical.jsonl", "application/x-ndjson") as out:

        def flush() -> None:
            nonlocal documents, written, size
            canonical = _canonical_lines(batch, depth)
            out.write(canonical)
            digest.update(canonical)
            documents += len(batch)
            written += len(canonical)
            batch.clear()
            size = 0

        for number, line in lines:
            if number == 1 and line.startswith(_UTF8_BOM):
                line = line[len(_UTF8_BOM) :]
            if not line.strip(b" \t\r"):
                continue  # blank lines carry no document
            batch.append((number, line))
            size += len(line)
            if size >= _BATCH_BYTES:
                flush()
        if batch:
            flush()
    return {
        "sha256": digest.hexdigest(),
        "input_bytes": lines.bytes_read,
        "output_bytes": written,
        "output": "canonical.jsonl",
        "mode": "jsonl",
        "documents": documents,
    }


def _canonical_lines(batch: list[tuple[int, bytes]], depth: int) -> bytes:
    """The canonical lines of a batch; one by one (naming the first bad line) when the
    batch as a whole cannot be vouched for."""
    try:
        return _fast_lines([line for _, line in batch], depth)
    except _Fallback:
        pass
    parts = []
    for number, line in batch:
        try:
            parts.append(canonicalize(line, depth) + b"\n")
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
    return b"".join(parts)


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
