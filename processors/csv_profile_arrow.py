"""CSV_PROFILE's engine: pyarrow's streaming CSV reader, every column read as text.

Types are inferred here, vectorised per block with pyarrow.compute, so a value in a later
block that does not fit only drops a candidate type: nothing is fixed by the first block.
Values the vectorised checks do not settle (say ``+1``, `` 5``, ``1e400``, an ISO datetime
with an offset) go through the exact Python converters, so the semantics stay those of
``int()``, ``float()`` and ``fromisoformat``.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from processors import conf
from processors._streams import count_lines, decode_error
from processors.base import ProcessorContext, ProcessorError
from processors.hll import HyperLogLog

MiB = 1024 * 1024
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
TYPES: list[tuple[str, Callable[[str], Any]]] = [
    ("integer", _to_int),
    ("float", _to_float),
    ("boolean", _to_bool),
    ("date", _to_date),
    ("datetime", _to_datetime),
]
_CONVERTERS = dict(TYPES)


class _Fallback(Exception):
    """The vectorised check cannot decide this block: use the exact Python converter."""


# Polynomial string hash over the UTF-8 bytes taken 8 at a time (little-endian words, the
# last one zero-padded), word j weighted by P**j; P**j comes from two small tables so
# any length up to 2**35 bytes needs only 2 x 64 Ki entries.
_P = np.uint64(0x100000001B3)
_POW_LO = np.cumprod(np.concatenate([[1], np.full(65535, _P)]).astype(np.uint64))
_POW_HI = np.cumprod(
    np.concatenate([[1], np.full(65535, (_POW_LO[-1:] * _P)[0])]).astype(np.uint64)
)
_TAIL_MASK = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
READ_AHEAD_BLOCKS = 2
# pyarrow parses the next block on its CPU pool while this thread profiles the last one:
# the same CPU time, less wall clock.
USE_THREADS = True
_HASH_SLICE = 256 * 1024  # bytes hashed at a time: bounds the temporaries


def _mix(h: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser: spreads the polynomial's weak low bits over all 64.
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _hash_strings(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """64-bit hashes of the strings data[offsets[i]:offsets[i+1]] (no nulls)."""
    lengths = np.diff(offsets)
    padded = np.zeros(len(data) + 8, dtype=np.uint8)
    padded[: len(data)] = data
    # Every byte offset viewed as the start of a little-endian uint64 (unaligned reads).
    words = np.ndarray(shape=(len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))
    longest = int(lengths.max()) if len(lengths) else 0
    if longest <= 32:
        # Short strings (most fields): one pass per word over the rows, same hash.
        starts = offsets[:-1]
        sums = np.zeros(len(lengths), dtype=np.uint64)
        for j in range((longest + 7) >> 3):
            rest = np.clip(lengths - 8 * j, 0, 8)
            w = words[np.minimum(starts + 8 * j, len(data))]
            w &= _TAIL_MASK[rest]
            w *= _POW_LO[j]
            sums += w
    else:
        words_per = (lengths + 7) >> 3
        total = int(words_per.sum())
        first_word = np.cumsum(words_per) - words_per
        j = np.arange(total, dtype=np.int64) - np.repeat(first_word, words_per)
        w = words[np.repeat(offsets[:-1], words_per) + 8 * j]
        w &= _TAIL_MASK[np.minimum(np.repeat(lengths, words_per) - 8 * j, 8)]
        w *= _POW_LO[j & 0xFFFF]
        if j.max() > 0xFFFF:
            w *= _POW_HI[j >> 16]
        sums = np.zeros(len(lengths), dtype=np.uint64)
        nonempty = words_per > 0
        sums[nonempty] = np.add.reduceat(w, first_word[nonempty])
    sums ^= lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return _mix(sums)


def data_bytes(arr: pa.Array) -> int:
    """UTF-8 bytes of all the values together."""
    offsets = _offsets(arr)
    return int(offsets[-1] - offsets[0]) if len(arr) else 0


def byte_lengths(arr: pa.Array) -> np.ndarray:
    """UTF-8 length of each value (0 for a null), from the offsets alone."""
    return np.diff(_offsets(arr))


def _offsets(arr: pa.Array) -> np.ndarray:
    return np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)


_INT_TEXT = r"^-?[0-9]+$"
_INT_TEXT_MAX = 18  # bytes: such a text is one int64 value and back


class _Hll:
    """The registers of processors.hll.HyperLogLog (p=12), updated a block at a time.

    A text counts once however often it occurs. Integer texts (``-?[0-9]+``, at most 18
    bytes) in a column that started as integers are hashed from their value and length,
    which identify the text; every other text is hashed from its UTF-8 bytes.
    """

    P = 12

    def __init__(self) -> None:
        self.registers = np.zeros(1 << self.P, dtype=np.uint8)
        self.int_mode: bool | None = None
        self.dedupe = True  # hash each block's unique values: cheap while few

    def add_hashes(self, h: np.ndarray) -> None:
        index = (h >> np.uint64(64 - self.P)).astype(np.intp)
        rest = h & np.uint64((1 << (64 - self.P)) - 1)
        # frexp's exponent is bit_length, exact for these 52-bit values.
        rank = (64 - self.P) - np.frexp(rest.astype(np.float64))[1] + 1
        np.maximum.at(self.registers, index, rank.astype(np.uint8))

    def add(self, arr: pa.Array, ints: pa.Array | None) -> None:
        """arr: a string array without nulls; ints: its int64 values if all are integers."""
        if self.int_mode is None:
            self.int_mode = ints is not None
        if not self.int_mode:
            self._add_texts(arr)
            return
        lengths = np.diff(_offsets(arr))
        if ints is not None:
            is_int = lengths <= _INT_TEXT_MAX
        else:
            matches = pc.match_substring_regex(arr, _INT_TEXT).to_numpy(zero_copy_only=False)
            is_int = matches & (lengths <= _INT_TEXT_MAX)
        if is_int.all():
            values = (ints if ints is not None else pc.cast(arr, pa.int64())).to_numpy()
        else:
            mask = pa.array(is_int)
            self._add_texts(arr.filter(pc.invert(mask)))
            values = pc.cast(arr.filter(mask), pa.int64()).to_numpy()
            lengths = lengths[is_int]
        h = values.view(np.uint64) * np.uint64(0xD6E8FEB86659FD93)
        h ^= lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        self.add_hashes(_mix(h))

    def _add_texts(self, arr: pa.Array) -> None:
        if self.dedupe and len(arr) > 64:
            unique = pc.unique(arr)
            self.dedupe = len(unique) * 2 < len(arr)
            arr = unique
        self.add_strings(arr)

    def add_strings(self, arr: pa.Array) -> None:
        if not len(arr):
            return
        data_buf = arr.buffers()[2]
        offsets = _offsets(arr)
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        start = 0
        n = len(arr)
        while start < n:
            # Rows whose bytes fit in one slice (at least one row).
            limit = offsets[start] + _HASH_SLICE
            end = max(start + 1, int(np.searchsorted(offsets, limit, side="right")) - 1)
            end = min(end, n)
            piece = offsets[start : end + 1].astype(np.int64)
            base = piece[0]
            self.add_hashes(_hash_strings(data[base : piece[-1]], piece - base))
            start = end

    def count(self) -> int:
        hll = HyperLogLog(self.P)
        hll.registers = bytearray(self.registers.tobytes())
        return hll.count()


class Column:
    def __init__(self, name: str) -> None:
        self.name = name
        self.nulls = 0
        self.values = 0
        self.candidates = [name for name, _ in TYPES]
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}
        self.str_min: str | None = None
        self.str_max: str | None = None
        self.distinct = _Hll()

    def add(self, arr: pa.Array) -> None:
        """One block of this column: a string array, nulls for empty fields."""
        self.nulls += arr.null_count
        if arr.null_count:
            arr = pc.drop_null(arr)
        if not len(arr):
            return
        self.values += len(arr)
        low, high = pc.min_max(arr).values()  # UTF-8 byte order is code point order
        self._update("string", low.as_py(), high.as_py())
        if self.values == len(arr) and len(arr) > 256:
            # The first block: a failing cast still parses the whole block, so most
            # candidates are dropped on a sample first.
            self.add_sample(arr.slice(0, 256))
        ints = None
        for type_name in list(self.candidates):
            try:
                if type_name == "integer":
                    values = pc.cast(arr, pa.int64())  # digits and '-' only: a subset of int()
                    low, high = int_range = _min_max(values)  # digits and '-' only: a subset of int()
                    ints = values
                elif type_name == "float" and ints is not None:
                    # float() is monotonic: the float range of integers is theirs, converted.
                    low, high = float(int_range[0]), float(int_range[1])
                else:
                    low, high = _VECTORISED[type_name](arr)
            except (_Fallback, pa.ArrowInvalid, OverflowError, ValueError):
                self._python(type_name, arr)
            else:
                self._update(type_name, low, high)
        self.distinct.add(arr, ints)

    def add_sample(self, arr: pa.Array) -> None:
        for type_name in list(self.candidates):
            try:
                low, high = _VECTORISED[type_name](arr)
            except (_Fallback, pa.ArrowInvalid, OverflowError, ValueError):
                self._python(type_name, arr)
            else:
                self._update(type_name, low, high)

    def _update(self, type_name: str, low: Any, high: Any) -> None:
        if type_name == "string":
            if self.str_min is None or low < self.str_min:
                self.str_min = low
            if self.str_max is None or high > self.str_max:
                self.str_max = high
            return
        try:
            # A naive and an aware datetime do not compare: such a column is not datetime.
            if type_name not in self.mins or low < self.mins[type_name]:
                self.mins[type_name] = low
            if type_name not in self.maxs or high > self.maxs[type_name]:
                self.maxs[type_name] = high
        except TypeError:
            self.candidates.remove(type_name)

    def _python(self, type_name: str, arr: pa.Array) -> None:
        convert = _CONVERTERS[type_name]
        start, step = 0, 16
        while start < len(arr):  # growing slices: a misfit usually comes early
            for text in arr.slice(start, step).to_pylist():
                try:
                    value = convert(text)
                except (ValueError, KeyError, TypeError):
                    self.candidates.remove(type_name)
                    return
                self._update(type_name, value, value)
                if type_name not in self.candidates:
                    return
            start, step = start + step, step * 4

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


def _min_max(arr: pa.Array) -> tuple[Any, Any]:
    low, high = pc.min_max(arr).values()
    return low.as_py(), high.as_py()


def _v_integer(arr: pa.Array) -> tuple[Any, Any]:
    return _min_max(pc.cast(arr, pa.int64()))  # digits and '-' only: a subset of int()


def _v_float(arr: pa.Array) -> tuple[Any, Any]:
    values = pc.cast(arr, pa.float64())
    if not pc.all(pc.is_finite(values)).as_py():
        raise _Fallback  # nan/inf literals are refused, 1e400 is not: float() decides
    return _min_max(values)


_BOOL_TEXTS = pa.array(["true", "false", "True", "False", "TRUE", "FALSE"])
_FALSE_TEXTS = pa.array(["false", "False", "FALSE"])


def _v_boolean(arr: pa.Array) -> tuple[Any, Any]:
    if not pc.all(pc.is_in(arr, value_set=_BOOL_TEXTS)).as_py():
        raise _Fallback  # other spellings (tRUE): str.lower() decides
    falses = pc.sum(pc.is_in(arr, value_set=_FALSE_TEXTS)).as_py() or 0
    return (falses == 0, falses < len(arr))  # (min, max): False < True


def _v_date(arr: pa.Array) -> tuple[Any, Any]:
    lengths = byte_lengths(arr)
    if lengths.min() != 10 or lengths.max() != 10:
        raise _Fallback
    try:
        return _min_max(pc.cast(arr, pa.date32()))  # YYYY-MM-DD only
    except ValueError:  # year 0, which arrow takes and Python does not
        raise _Fallback from None


def _v_datetime(arr: pa.Array) -> tuple[Any, Any]:
    # Every text arrow casts is one fromisoformat reads alike, except a bare hour
    # (2024-01-31T10), which the length excludes; offsets, 'Z', commas and more than
    # 6 fraction digits fail the cast and go to fromisoformat.
    if byte_lengths(arr).min() < 16:
        raise _Fallback
    return _min_max(pc.cast(arr, pa.timestamp("us")))


_VECTORISED: dict[str, Callable[[pa.Array], tuple[Any, Any]]] = {
    "integer": _v_integer,
    "float": _v_float,
    "boolean": _v_boolean,
    "date": _v_date,
    "datetime": _v_datetime,
}


class Utf8Source(io.RawIOBase):
    """ctx.input as validated UTF-8 for pyarrow: progress, decoding, BOM, line count."""

    def __init__(self, ctx: ProcessorContext, encoding: str, quotechar: str, block: int) -> None:
        self._ctx = ctx
        self._input = ctx.input
        self._block = block
        codec = codecs.lookup(encoding).name
        self._utf8 = codec in ("utf-8", "utf-8-sig")
        self._decoder = codecs.getincrementaldecoder("utf-8" if self._utf8 else encoding)("strict")
        self._quote = quotechar.encode("utf-8")
        self._buffer = b""
        self._pos = 0
        self.bytes_read = 0
        self.lines = 0  # line terminators seen
        self.quotes = 0
        self.last_byte = b""
        self._first = True
        self._eof = False
        # pyarrow's reader reads ahead in a background thread, up to 32 blocks; this
        # holds it to a few blocks past the batches consumed (a deadline avoids a stall).
        self._given = 0
        self._consumed = 0
        self._ahead = threading.Condition()
        self._closed = False
        self.stalls = 0  # read-ahead waits that ran into the deadline

    @property
    def block(self) -> int:
        return self._block

    def finish(self) -> None:
        """The job is over (done or failed): pyarrow's thread gets end of input from now on."""
        with self._ahead:
            self._closed = True
            self._ahead.notify_all()

    def batch_done(self) -> None:
        with self._ahead:
            self._consumed += 1
            self._ahead.notify_all()

    def _wait_for_consumer(self) -> None:
        with self._ahead:
            if not self._ahead.wait_for(
                lambda: self._closed or self._given - self._consumed < READ_AHEAD_BLOCKS, timeout=0.5
            ):
                self.stalls += 1
            self._given += 1

    def _read_block(self) -> bytes:
        # Whole blocks: a record is refused only when it is longer than one block.
        parts = []
        size = 0
        while size < self._block:
            chunk = self._input.read(self._block - size)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes:
        while chunk := self._read_block():
            start = self.bytes_read
            self.bytes_read += len(chunk)
            try:
                if self._utf8:
                    if not chunk.isascii() or self._decoder.getstate()[0]:
                        self._decoder.decode(chunk)
                    out = chunk
                else:
                    out = self._decoder.decode(chunk).encode("utf-8")
            except UnicodeDecodeError as exc:
                raise self._decode_error(exc, chunk, start) from None
            if self._first and out:
                self._first = False
                if out.startswith(codecs.BOM_UTF8):
                    out = out[3:]
            if not out:
                continue
            self._count(out)
            return out
        if not self._eof:
            self._eof = True
            try:
                tail = self._decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                raise self._decode_error(exc, b"", self.bytes_read) from None
            out = b"" if self._utf8 else tail.encode("utf-8")
            if out:
                self._count(out)
                return out
        return b""

    def _count(self, out: bytes) -> None:
        lines = count_lines(out)
        if self.last_byte == b"\r" and out[:1] == b"\n":
            lines -= 1  # a CRLF split over two reads is one terminator
        self.lines += lines
        self.quotes += out.count(self._quote)
        self.last_byte = out[-1:]

    def _decode_error(self, exc: UnicodeDecodeError, chunk: bytes, start: int) -> ProcessorError:
        held = len(exc.object) - len(chunk) if self._utf8 else 0
        offset = max(0, start + exc.start - held)
        line = self.lines + count_lines(chunk[: max(0, exc.start - held)]) + 1
        return decode_error(exc, offset=offset, line=line)

    def skip(self, size: int) -> None:
        """Drop bytes peeked at (main thread only: it reports progress)."""
        self._pos += size
        self._ctx.progress(self.bytes_read)

    def peek(self, size: int) -> bytes:
        """At least ``size`` bytes from the start (fewer at end of input), still unread."""
        while len(self._buffer) - self._pos < size:
            more = self._next()
            if not more:
                break
            self._buffer = self._buffer[self._pos :] + more
            self._pos = 0
        return self._buffer[self._pos :]

    def read(self, size: int = -1) -> bytes:
        # At most one chunk per call: pyarrow asks for a whole block, and RawIOBase.read
        # would allocate that much up front.
        if self._pos >= len(self._buffer):
            self._wait_for_consumer()
            if self._closed:
                return b""
            self._buffer, self._pos = self._next(), 0
        end = len(self._buffer) if size is None or size < 0 else self._pos + size
        out = self._buffer if self._pos == 0 and end >= len(self._buffer) else self._buffer[self._pos:end]
        self._pos += len(out)
        return out

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        out = self.read(len(buffer))
        buffer[: len(out)] = out
        return len(out)

    @property
    def total_lines(self) -> int:
        # A last line without a terminator is a line too.
        return self.lines + (1 if self.last_byte not in (b"", b"\n", b"\r") else 0)


def line_breaks(arr: pa.Array) -> int:
    """Line breaks inside the values of a string array (LF, CRLF, lone CR: one each)."""
    data_buf = arr.buffers()[2]
    if data_buf is None or not len(arr):
        return 0
    offsets = _offsets(arr)
    data = memoryview(data_buf)[int(offsets[0]) : int(offsets[-1])].tobytes()
    # find() runs at memchr speed; most columns hold no line break at all.
    has_lf, has_cr = data.find(b"\n") >= 0, data.find(b"\r") >= 0
    if not has_cr:
        return data.count(b"\n") if has_lf else 0
    return count_lines(data)


def parse_fields(text: str, delimiter: str, quotechar: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quotechar))
    return [field for row in rows for field in row] if len(rows) != 1 else rows[0]


def block_size() -> int:
    # pyarrow refuses a record longer than one block: the block is the record limit,
    # within 1 MiB and CSV_PROFILE_BLOCK_BYTES (bigger blocks parse slower, cost memory).
    cap = max(MiB, int(conf.setting("CSV_PROFILE_BLOCK_BYTES", 4 * MiB)))
    return max(MiB, min(cap, conf.csv_max_record_chars()))


def open_reader(source: Utf8Source, names: list[str], has_header: bool, delimiter: str,
                quotechar: str, on_invalid: Callable) -> pcsv.CSVStreamingReader:
    return pcsv.open_csv(
        source,
        read_options=pcsv.ReadOptions(
            use_threads=USE_THREADS,
            block_size=source.block,
            column_names=None if has_header else names,
        ),
        parse_options=pcsv.ParseOptions(
            delimiter=delimiter,
            quote_char=quotechar,
            double_quote=True,
            escape_char=False,
            newlines_in_values=True,
            ignore_empty_lines=True,
            invalid_row_handler=on_invalid,
        ),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def first_record(source: Utf8Source, delimiter: str, quotechar: str) -> list[str] | None:
    """The first non-blank record, read from the first chunk(s) without consuming them."""
    while True:
        peek = source.peek(conf.csv_header_max_bytes())
        if not peek:
            return None
        if peek.strip(b"\r\n"):
            break
        source.skip(len(peek))  # blank lines only: counted already, not records
    text = peek.decode("utf-8", "ignore")  # validated already; only a cut last character goes
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quotechar, strict=True)
    try:
        for row in reader:
            if row:
                return row
    except csv.Error as exc:
        if len(peek) >= conf.csv_header_max_bytes():
            raise ProcessorError(
                f"The first record is longer than {conf.csv_header_max_bytes()} bytes (CSV_HEADER_MAX_BYTES)",
                code="record_too_large",
                details={"line": 1},
            ) from None
        raise ProcessorError(
            f"Malformed CSV in the record starting on line 1: {exc}",
            code="malformed_csv",
            details={"line": 1},
        ) from None
    return None
