"""CSV_ROW_COUNT: count records without parsing every field.

Fast path (UTF-8 and single-byte ASCII-compatible encodings, ASCII delimiter and
quote): per chunk, numpy finds quote and line-break bytes; quote parity carried across
chunks says which line breaks are inside quoted fields. Only the header record is
parsed with the csv module. The quoting rules are checked on the same arrays, in the
strict form that makes parity counting exact:

* a quote that opens a field must start the field (after a delimiter, a line break or
  the start of the file); a quote inside an unquoted field is refused;
* a quote that closes a field must be followed by a delimiter, a line break, the end of
  the file, or another quote (a doubled quote inside a quoted field);
* a quoted field still open at the end of the file is refused.

Blank lines are not records (as csv.DictReader sees them); they are counted apart.
Other encodings (UTF-16, ...) take the csv.reader path, which is slower but identical
in result (its quoting rules are csv's strict mode, which tolerates quotes inside
unquoted fields).
"""

from __future__ import annotations

import codecs
import csv
import io
import sys

import numpy as np

from processors import _csv, conf
from processors._streams import count_lines, decode_error, iter_chunks
from processors.base import Processor, ProcessorContext, ProcessorError
from processors.registry import register

LF, CR = 0x0A, 0x0D
UTF8_BOM = codecs.BOM_UTF8
_EMPTY = np.empty(0, dtype=np.int64)
# Scan a read chunk in slices this big: the temporary arrays stay in CPU cache and are
# recycled by the allocator, and the fast scan's reused masks (_Workspace) stay a few slices.
_SLICE = 256 * 1024
_DECODE_PIECE = 32 * 1024

# Codecs in which CR, LF and every ASCII byte only ever mean themselves: no byte of a
# multi-byte character falls below 0x80, so byte-level scanning cannot be fooled.
_ASCII_SAFE = {
    "utf-8",
    "utf-8-sig",
    "ascii",
    "koi8-r",
    "koi8-u",
    "mac-roman",
    "latin-1",
}


_ONES = np.uint64(0x0101010101010101)
_TOP = np.uint64(56)
_ONE = np.uint64(1)
# _prefix_parity relies on byte k of a uint64 being the k-th byte in memory.
_LITTLE_ENDIAN = sys.byteorder == "little"


class _Workspace:
    """Buffers the fast scan reuses from slice to slice."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.is_lf = np.empty(size, dtype=bool)
        self.is_cr = np.empty(size, dtype=bool)
        self.is_q = np.empty(size, dtype=bool)
        self.ok = np.empty(size, dtype=bool)
        self.t1 = np.empty(size, dtype=bool)
        self.t2 = np.empty(size, dtype=bool)
        self.parity = np.empty(self.padded(size), dtype=np.uint8)
        self.words = np.empty(self.padded(size) // 8, dtype=np.uint64)

    @staticmethod
    def padded(n: int) -> int:
        return -(-n // 8) * 8


def _prefix_parity(x: np.ndarray, parity0: int, ws: _Workspace | None = None) -> None:
    """In place: each 0/1 byte of ``x`` (size a multiple of 8) becomes ``parity0``
    xor all bytes up to and including it. Eight bytes per uint64 word: multiplying a
    word by 0x0101..01 makes each byte the sum of the bytes up to it (at most 8, so
    nothing carries into the next byte); the words' totals get the same treatment one
    level up (an eighth of the size), and each word adds the parity of all words
    before it. About five passes over the buffer, where np.cumsum would widen every byte."""
    w = x.view(np.uint64)
    nw = w.size
    tmp = ws.words[:nw] if ws is not None else np.empty(nw, dtype=np.uint64)
    w *= _ONES  # little-endian: byte k of the product sums bytes 0..k
    np.right_shift(w, _TOP, out=tmp)
    if nw <= 8:
        upto = np.bitwise_xor.accumulate(tmp & _ONE)
    else:
        padded = np.zeros(-(-nw // 8) * 8, dtype=np.uint8)
        padded[:nw] = tmp
        padded &= 1
        _prefix_parity(padded, 0)
        upto = padded[:nw]
    # tmp becomes "parity of all words before this one", in each of the 8 bytes.
    tmp[1:] = upto[:-1]
    tmp[0] = 0
    if parity0:
        tmp ^= _ONE
    tmp *= _ONES
    w += tmp
    w &= _ONES


def _last_true(mask: np.ndarray) -> int:
    """Index of the last True (there is one); looks at the tail first."""
    hi, step = mask.size, 4096
    while True:
        lo = max(0, hi - step)
        found = np.flatnonzero(mask[lo:hi])
        if found.size:
            return lo + int(found[-1])
        hi, step = lo, step * 4


def _fast_path_ok(opts: _csv.CsvOptions) -> bool:
    codec = opts.codec
    safe = codec in _ASCII_SAFE or codec.startswith(("iso8859-", "cp125"))
    return safe and opts.delimiter.isascii() and opts.quotechar.isascii()


class _Scanner:
    """Holds what must survive a chunk boundary; ``feed`` processes one buffer.

    The caller guarantees a buffer never ends in CR unless it is the last, so a CRLF
    pair is always within one buffer.
    """

    def __init__(self, opts: _csv.CsvOptions, start: int) -> None:
        self.delim = ord(opts.delimiter)
        self.quote = ord(opts.quotechar)
        self.quote_byte = opts.quotechar.encode("ascii")
        # Bytes that may touch a quote: delimiter, line break, another quote.
        self.boundary = np.zeros(256, dtype=bool)
        self.boundary[[self.delim, LF, CR, self.quote]] = True
        self.delimiter = opts.delimiter
        self.want_header = opts.has_header
        self.header_max = conf.csv_header_max_bytes()
        codec = opts.codec
        # latin-1 maps every byte, so decoding would only cost time.
        self.decoder = (
            None
            if codec == "latin-1"
            else codecs.getincrementaldecoder(codec)("strict")
        )
        self.offset = start  # absolute offset of the next buffer
        self.parity = 0  # 1 while inside a quoted field
        self.prev = -1  # the byte before the next buffer; -1 at the start of the file
        self.seg_start = start  # where the current (unfinished) record starts
        self.seg_line = 1  # the physical line it starts on
        self.lines = 0  # line terminators (any, quoted or not) before ``offset``
        self.records = 0
        self.blank = 0
        self.pending_close = False  # the previous buffer ended in a closing quote
        self.first_state = 0  # first record: 0 not seen, 1 in progress, 2 complete
        self.first_delims = 0
        self.header = bytearray()
        self._ws: _Workspace | None = None

    # -- per buffer ----------------------------------------------------------------

    def feed(self, buf: bytes, final: bool) -> None:
        if buf:
            self._check_encoding(buf, final=False)
            self._scan(buf, final)
        if final:
            self._check_encoding(b"", final=True)
            self._finish()

    def _scan(self, buf: bytes, final: bool) -> None:
        # The fast scan only counts; anything it cannot settle cheaply (the first
        # record, the last buffer, lone CRs, a quoting error) goes to the exact scan,
        # which then also produces the error message with its line and offset.
        if _LITTLE_ENDIAN and self.first_state == 2 and not final and self._scan_fast(buf):
            return
        self._scan_exact(buf, final)

    def _scan_fast(self, buf: bytes) -> bool:
        """Whole-buffer boolean masks instead of position arrays: a quote's parity
        comes from a word-parallel prefix xor, so the cost does not grow with the
        number of quotes and line breaks. Every mask lives in a reused buffer: fresh
        temporaries are fresh pages, whose page faults cost more than the arithmetic.
        Returns False, having changed nothing, when the exact scan must handle this
        buffer."""
        a = np.frombuffer(buf, dtype=np.uint8)
        n = a.size
        if self.pending_close and not self.boundary[a[0]]:
            return False
        ws = self._workspace(n)
        is_lf = np.equal(a, LF, out=ws.is_lf[:n])
        t1, t2 = ws.t1[:n], ws.t2[:n]
        is_cr = None
        if b"\r" in buf:
            is_cr = np.equal(a, CR, out=ws.is_cr[:n])
            # Only CRs that pair with the next LF: each line then ends at an LF. (A
            # buffer never ends in CR here: the caller holds it back.)
            lone = np.greater(is_cr[:-1], is_lf[1:], out=t1[: n - 1])
            if lone.any() or is_cr[-1]:
                return False
        parity = self.parity
        pending = False
        if self.quote_byte in buf:
            x = ws.parity[: ws.padded(n)]
            x[n:] = 0
            is_q = np.equal(a, self.quote, out=ws.is_q[:n])
            x[:n] = is_q.view(np.uint8)
            _prefix_parity(x, self.parity, ws)
            inside = x[:n].view(bool)  # inside a quoted field right after this byte
            # Quoting rules without telling opening from closing quotes: a quote that
            # opens has an outside byte before it, one that closes an outside byte
            # after it (a quote flips the parity; any other byte keeps it). So a quote
            # is misplaced exactly when a neighbour is outside a quoted field and not
            # a delimiter, line break or quote. At the buffer start the byte before is
            # self.prev; a quote ending the buffer is judged by the next one.
            ok = np.equal(a, self.delim, out=ws.ok[:n])  # boundary, or inside
            ok |= is_lf
            ok |= is_q
            ok |= inside
            if is_cr is not None:
                ok |= is_cr
            if n > 2:
                both = np.logical_and(ok[:-2], ok[2:], out=t1[1 : n - 1])
                bad = np.greater(is_q[1:-1], both, out=t2[1 : n - 1])
                if bad.any():
                    return False
            if is_q[0]:
                if inside[0]:  # opens: the byte before is in the previous buffer
                    if not (self.prev == -1 or self.boundary[self.prev]):
                        return False
                elif n > 1 and not ok[1]:
                    return False
            if is_q[-1] and n > 1 and not ok[-2]:
                return False
            pending = bool(is_q[-1] and not inside[-1])
            parity = int(inside[-1])
            out = np.greater(is_lf, inside, out=t1)  # line end and not inside
        elif parity:
            out = None
        else:
            out = is_lf
        n_lines = int(np.count_nonzero(is_lf))
        records = blank = 0
        seg_start, seg_line = self.seg_start, self.seg_line
        if out is not None:
            n_out = n_lines if out is is_lf else int(np.count_nonzero(out))
            if n_out:
                # A blank line is a line end right after the previous one ends: LF LF,
                # or LF CR LF; at the buffer start, when the last record ended there.
                pair = np.logical_and(out[1:], out[:-1], out=t2[: n - 1])
                blank = int(np.count_nonzero(pair))
                if is_cr is not None and n > 2:
                    pair = np.logical_and(out[2:], is_cr[1:-1], out=t2[: n - 2])
                    pair &= out[:-2]
                    blank += int(np.count_nonzero(pair))
                if self.seg_start == self.offset and (
                    out[0] or (n > 1 and a[0] == CR and out[1])
                ):
                    blank += 1
                records = n_out - blank
                last = _last_true(out)
                seg_start = self.offset + last + 1
                seg_line = (
                    self.lines + n_lines - int(np.count_nonzero(is_lf[last + 1 :])) + 1
                )
        self.parity = parity
        self.pending_close = pending
        self.blank += blank
        self.records += records
        self.seg_start, self.seg_line = seg_start, seg_line
        self.lines += n_lines
        self.offset += n
        self.prev = int(a[-1])
        return True

    def _workspace(self, n: int) -> _Workspace:
        if self._ws is None or self._ws.size < n:
            self._ws = _Workspace(max(n, _SLICE + 1))
        return self._ws

    def _scan_exact(self, buf: bytes, final: bool) -> None:
        a = np.frombuffer(buf, dtype=np.uint8)
        base = self.offset
        parity0 = self.parity
        tpos, tstart, qpos, qbefore = self._positions(a, buf)
        if self.pending_close:
            self._check_pending_close(a)
        if qpos is not None:
            self._check_quotes(a, qpos, tpos, parity0, final)
            keep = ((parity0 + qbefore) & 1) == 0
            otpos, ostart = tpos[keep], tstart[keep]
            self.parity = (parity0 + qpos.size) & 1
        elif parity0:
            otpos, ostart = _EMPTY, _EMPTY
        else:
            otpos, ostart = tpos, tstart
        ends = otpos + (base + 1)
        starts = ostart + base
        prev_ends = np.concatenate(([self.seg_start], ends[:-1]))
        empty = starts == prev_ends
        n_blank = int(np.count_nonzero(empty))
        self.blank += n_blank
        self.records += otpos.size - n_blank
        if self.first_state != 2:
            self._track_first(a, qpos, parity0, base, starts, prev_ends, empty, ends)
        if otpos.size:
            self.seg_start = int(ends[-1])
            self.seg_line = (
                self.lines + int(np.searchsorted(tpos, otpos[-1], side="right")) + 1
            )
        self.lines += tpos.size
        self.offset += len(buf)
        self.prev = int(a[-1])

    def _positions(
        self, a: np.ndarray, buf: bytes
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Line ends (LF, or a CR not followed by LF), where each starts (a CRLF at its
        CR, which matters for spotting blank lines), quote positions, and the number of
        quotes before each line end. The ``in`` tests are memchr-fast and let the
        common files (no CR, few or no quotes) skip whole passes."""
        has_cr = b"\r" in buf
        if has_cr:
            lf = a == LF
            cr = a == CR
            term = lf | cr
            term[:-1] &= ~(cr[:-1] & lf[1:])
        else:
            term = a == LF
        qpos = qbefore = None
        if self.quote_byte in buf:
            # One nonzero pass over "line end or quote", then a running quote count,
            # is cheaper than locating both separately and binary-searching.
            is_quote = a == self.quote
            special = np.flatnonzero(term | is_quote)
            kind = is_quote[special]
            qpos = special[kind]
            line_end = ~kind
            tpos = special[line_end]
            qbefore = np.cumsum(kind)[line_end]
        else:
            tpos = np.flatnonzero(term)
        if not has_cr or tpos.size == 0:
            return tpos, tpos, qpos, qbefore
        crlf = (a[tpos] == LF) & (a[tpos - 1] == CR) & (tpos > 0)
        return tpos, tpos - crlf, qpos, qbefore

    # -- validation ----------------------------------------------------------------

    def _check_encoding(self, buf: bytes, final: bool) -> None:
        if self.decoder is None:
            return
        held = len(self.decoder.getstate()[0])
        # Pure ASCII is valid in every codec of the fast path and leaves the decoder in
        # the same state; bytes.isascii() checks it at memory speed, far cheaper than
        # decoding the mostly ASCII bytes of typical CSV.
        if not held and not final and buf.isascii():
            return
        # Piece by piece: ASCII pieces are skipped, and the decoded text of a piece stays
        # small enough to be recycled by the allocator (a whole slice's str would be
        # fresh pages every time, slower to decode into).
        size = len(buf)
        for lo in range(0, size or 1, _DECODE_PIECE):
            piece = buf[lo : lo + _DECODE_PIECE]
            last = final and lo + _DECODE_PIECE >= size
            held = len(self.decoder.getstate()[0])
            if not held and not last and piece.isascii():
                continue
            try:
                self.decoder.decode(piece, last)
            except UnicodeDecodeError as exc:
                pos = lo + max(0, exc.start - held)
                line = self.lines + count_lines(buf[:pos]) + 1
                raise decode_error(
                    exc, offset=self.offset + lo - held + exc.start, line=line
                ) from None

    def _check_quotes(
        self,
        a: np.ndarray,
        qpos: np.ndarray,
        tpos: np.ndarray,
        parity0: int,
        final: bool,
    ) -> None:
        # Quotes alternate opening/closing, so strided views split them without a
        # per-quote parity array; each side is checked with one gather + table lookup.
        opening = qpos[parity0::2]
        closing = qpos[1 - parity0 :: 2]
        prev_ok = self.boundary[a[opening - 1]]  # index -1 wraps; fixed just below
        if opening.size and opening[0] == 0:
            prev_ok[0] = self.prev == -1 or bool(self.boundary[self.prev])
        n = a.size
        at_end = bool(closing.size) and closing[-1] == n - 1
        nxt = closing[:-1] if at_end else closing
        next_ok = self.boundary[a[nxt + 1]]
        if at_end:
            # Its next byte is in the next buffer: judged there, by _check_pending_close.
            next_ok = np.append(next_ok, True)
            self.pending_close = not final
        if prev_ok.all() and next_ok.all():
            return
        bad_open = opening[~prev_ok]
        bad_close = closing[~next_ok]
        first_open = int(bad_open[0]) if bad_open.size else n
        first_close = int(bad_close[0]) if bad_close.size else n
        pos = min(first_open, first_close)
        quote_line = self.lines + int(np.searchsorted(tpos, pos)) + 1
        record_line = self._record_line(pos, qpos, tpos, parity0)
        where = f"line {quote_line}, byte offset {self.offset + pos}"
        if pos == first_open:
            problem = (
                f"quote character inside an unquoted field ({where}); "
                "quote the whole field and double the quote"
            )
        else:
            problem = f"{self.delimiter!r} or end of line expected after the closing quote ({where})"
        raise ProcessorError(
            f"Malformed CSV in the record starting on line {record_line}: {problem}",
            code="malformed_csv",
            details={"line": record_line, "offset": self.offset + pos},
        )

    def _check_pending_close(self, a: np.ndarray) -> None:
        self.pending_close = False
        if self.boundary[a[0]]:
            return
        # No line break lies between that quote and here, so both are on the current
        # line, in the current record.
        raise ProcessorError(
            f"Malformed CSV in the record starting on line {self.seg_line}: "
            f"{self.delimiter!r} or end of line expected after the closing quote "
            f"(line {self.lines + 1}, byte offset {self.offset - 1})",
            code="malformed_csv",
            details={"line": self.seg_line, "offset": self.offset - 1},
        )

    def _record_line(
        self, pos: int, qpos: np.ndarray, tpos: np.ndarray, parity0: int
    ) -> int:
        before = tpos[tpos < pos]
        inside = (parity0 + np.searchsorted(qpos, before)) & 1
        outside = before[inside == 0]
        if outside.size == 0:
            return self.seg_line
        return self.lines + int(np.searchsorted(tpos, outside[-1], side="right")) + 1

    # -- first record (columns, header) ----------------------------------------------

    def _track_first(
        self,
        a: np.ndarray,
        qpos: np.ndarray | None,
        parity0: int,
        base: int,
        starts: np.ndarray,
        prev_ends: np.ndarray,
        empty: np.ndarray,
        ends: np.ndarray,
    ) -> None:
        if self.first_state == 1:
            # Continues from the previous buffer up to the first record end (if any).
            hi = int(starts[0]) - base if starts.size else a.size
            self._take_first(a, 0, hi, qpos, parity0)
            self.first_state = 2 if starts.size else 1
            return
        nonempty = np.flatnonzero(~empty)
        if nonempty.size:
            k = int(nonempty[0])
            self._take_first(
                a, int(prev_ends[k]) - base, int(starts[k]) - base, qpos, parity0
            )
            self.first_state = 2
            return
        tail = (int(ends[-1]) if ends.size else self.seg_start) - base
        if tail < a.size:
            self._take_first(a, tail, a.size, qpos, parity0)
            self.first_state = 1

    def _take_first(
        self, a: np.ndarray, lo: int, hi: int, qpos: np.ndarray | None, parity0: int
    ) -> None:
        dpos = np.flatnonzero(a[lo:hi] == self.delim) + lo
        if qpos is not None:
            dpos = dpos[((parity0 + np.searchsorted(qpos, dpos)) & 1) == 0]
        elif parity0:
            dpos = _EMPTY
        self.first_delims += dpos.size
        if self.want_header:
            self.header += a[lo:hi].tobytes()
            if len(self.header) > self.header_max:
                raise ProcessorError(
                    f"The header record is longer than {self.header_max} bytes "
                    "(CSV_HEADER_MAX_BYTES); use has_header=false for files without a header",
                    code="header_too_large",
                    details={"line": self.seg_line},
                )

    def _finish(self) -> None:
        if self.parity:
            raise ProcessorError(
                f"Malformed CSV in the record starting on line {self.seg_line}: "
                "unterminated quoted field at end of file",
                code="malformed_csv",
                details={"line": self.seg_line},
            )
        if self.seg_start < self.offset:  # last record has no line break after it
            self.records += 1
            self.first_state = 2


def _count_fast(ctx: ProcessorContext, opts: _csv.CsvOptions) -> dict:
    scanner: _Scanner | None = None
    carry = b""
    total = 0
    for chunk in iter_chunks(ctx):
        total += len(chunk)
        buf = carry + chunk if carry else chunk
        if scanner is None:
            if (
                opts.strips_bom
                and len(buf) < len(UTF8_BOM)
                and UTF8_BOM.startswith(buf)
            ):
                carry = buf  # too short to tell whether it is a BOM yet
                continue
            scanner, buf = _start(opts, buf)
        carry = b""
        for start in range(0, len(buf), _SLICE):
            piece = (
                carry + buf[start : start + _SLICE]
                if carry
                else buf[start : start + _SLICE]
            )
            if piece[-1] == CR:
                carry, piece = piece[-1:], piece[:-1]
            else:
                carry = b""
            scanner.feed(piece, final=False)
    if scanner is None:
        scanner, carry = _start(opts, carry)
    scanner.feed(carry, final=True)
    return _result(scanner, opts, total)


def _start(opts: _csv.CsvOptions, buf: bytes) -> tuple[_Scanner, bytes]:
    if opts.strips_bom and buf.startswith(UTF8_BOM):
        return _Scanner(opts, start=len(UTF8_BOM)), buf[len(UTF8_BOM) :]
    return _Scanner(opts, start=0), buf


def _result(scanner: _Scanner, opts: _csv.CsvOptions, total: int) -> dict:
    has_first = scanner.first_state == 2
    header = (
        _parse_header(bytes(scanner.header), opts)
        if opts.has_header and has_first
        else None
    )
    rows = scanner.records - (1 if opts.has_header and has_first else 0)
    return {
        "rows": rows,
        "columns": scanner.first_delims + 1 if has_first else 0,
        "header": header,
        "bytes": total,
        "blank_lines": scanner.blank,
    }


def _parse_header(raw: bytes, opts: _csv.CsvOptions) -> list[str]:
    # The scanner already validated encoding and quoting, and the header is bounded by
    # CSV_HEADER_MAX_BYTES, so the field limit only needs to admit that much.
    csv.field_size_limit(max(conf.csv_field_size_limit(), len(raw)))
    reader = _csv.make_reader(
        iter(io.StringIO(raw.decode(opts.codec), newline="")), opts
    )
    return next(reader, [])


def _count_with_csv(ctx: ProcessorContext, opts: _csv.CsvOptions) -> dict:
    rows = blank = 0
    first: list[str] | None = None
    records = _csv.Records(ctx, opts)
    for record in records:
        if record is None:
            blank += 1
        elif first is None:
            first = record.fields
        else:
            rows += 1
    if first is not None and not opts.has_header:
        rows += 1
    return {
        "rows": rows,
        "columns": len(first) if first is not None else 0,
        "header": first if opts.has_header else None,
        "bytes": records.bytes_read,
        "blank_lines": blank,
    }


def run(ctx: ProcessorContext) -> dict:
    opts = _csv.CsvOptions.from_params(ctx.params)
    if _fast_path_ok(opts):
        return _count_fast(ctx, opts)
    return _count_with_csv(ctx, opts)


PROCESSOR = register(
    Processor(
        job_type="CSV_ROW_COUNT",
        version="1.0",
        title="CSV row count",
        description=(
            "Counts the data records of a CSV file (quoted line breaks handled; blank lines "
            "are not records and are reported as blank_lines) and returns the header and "
            "the number of columns of the first record."
        ),
        params_schema=_csv.PARAMS_SCHEMA,
        run=run,
        check_params=_csv.check_params,
    )
)
