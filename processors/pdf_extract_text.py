"""PDF_EXTRACT_TEXT: text of every page to text.txt, pages separated by form feeds.

The engine is PDFium (through pypdfium2): linear in a page's content where pypdf is
quadratic in text operators, and many times faster on ordinary documents. Pages are read
in a forked process (processors/_pdf_pages.py), because PDFium aborts its process when an
allocation fails: there, a page past the job's memory limit fails the job cleanly.

A PDF is read from its end (the cross-reference table sits there), so PDFium needs the
whole file. The input stream is not seekable, so it is spooled into memory, which is why
the input is capped by PDF_MAX_BYTES (checked on the declared size before reading and
again while reading, since a declared size can be wrong). Memory, not a temp file: the
platform never writes inputs to local disk.

Each page has a budget: PDF_PAGE_CPU_SECONDS of CPU time and PDF_PAGE_MAX_CHARS of text.
A page over either fails the job with code "page_over_budget" (a partial text would pass
for the whole). PDFium cannot be interrupted inside a call, so the time is checked after
each step of a page; a call that never returns is ended by the job's own CPU limit.

Encryption: a PDF encrypted with an empty user password opens in every viewer without
a prompt, so it is opened and extracted; one that needs a real password fails with
code "encrypted".
"""

from __future__ import annotations

import io
import time
from contextlib import closing
from typing import TYPE_CHECKING

from processors import conf
from processors._pdf_pages import page_texts
from processors._streams import iter_chunks
from processors.base import Processor, ProcessorContext, ProcessorError
from processors.registry import register

if TYPE_CHECKING:
    import pypdfium2


def page_cpu_seconds() -> float:
    return float(conf.setting("PDF_PAGE_CPU_SECONDS", 10.0))


def page_max_chars() -> int:
    return int(conf.setting("PDF_PAGE_MAX_CHARS", 1_000_000))


def _spool(ctx: ProcessorContext, limit: int) -> bytes:
    message = (
        "The PDF is {size} bytes; PDF_EXTRACT_TEXT accepts at most "
        f"{limit} bytes (PDF_MAX_BYTES)"
    )
    if ctx.input_size > limit:
        raise ProcessorError(
            message.format(size=ctx.input_size), code="input_too_large"
        )
    spool = io.BytesIO()
    for chunk in iter_chunks(ctx):
        if spool.tell() + len(chunk) > limit:
            raise ProcessorError(
                message.format(size=f"more than {limit}"), code="input_too_large"
            )
        spool.write(chunk)
    return spool.getvalue()


def _open(data: bytes) -> pypdfium2.PdfDocument:
    """The document; `data` must stay referenced while it is open (PDFium reads it in place)."""
    # Imported here, not at the top: PDFium adds its memory to every process that loads
    # it, and only PDF jobs need it.
    import pypdfium2
    import pypdfium2.raw as pdfium_c

    # The raw loader, not PdfDocument(data): that one also refuses a readable PDF with an
    # empty page tree, with a stale error code. No password: PDFium tries the empty one.
    handle = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
    if handle:
        return pypdfium2.PdfDocument(handle)
    error = pdfium_c.FPDF_GetLastError()
    if error == pdfium_c.FPDF_ERR_PASSWORD:
        raise ProcessorError(
            "The PDF is encrypted with a password; remove the password and upload it again",
            code="encrypted",
        )
    if error == pdfium_c.FPDF_ERR_SECURITY:
        raise ProcessorError(
            "The PDF is encrypted with a security handler that cannot be opened here",
            code="encrypted",
        )
    reasons = {
        pdfium_c.FPDF_ERR_FORMAT: "it is damaged or not a PDF file",
        pdfium_c.FPDF_ERR_FILE: "it could not be opened",
    }
    raise ProcessorError(
        f"The PDF could not be read: {reasons.get(error, f'PDFium error {error}')}",
        code="invalid_pdf",
    )


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:300]


def run(ctx: ProcessorContext) -> dict:
    data = _spool(ctx, conf.pdf_max_bytes())
    if b"%PDF-" not in data[:1024]:
        raise ProcessorError(
            "The input is not a PDF (no %PDF- header)", code="not_a_pdf"
        )
    budget = Budget(page_cpu_seconds(), page_max_chars())
    per_page: list[int] = []
    pages = page_texts(
        lambda: _open(data),
        lambda document, number: _page_text(document, number, budget),
        conf.pdf_max_pages(),
    )
    # Closed on any exit: that stops PDFium's process at once.
    with closing(pages):
        count, _ = next(pages)
        with ctx.open_output("text.txt", "text/plain; charset=utf-8") as out:
            for number, (chars, text) in enumerate(pages):
                # A big document takes a while: let a cancel land between pages.
                ctx.progress(ctx.input_size)
                if number:
                    out.write(b"\f")
                out.write(text.encode("utf-8"))
                per_page.append(chars)
    cap = conf.pdf_per_page_list_max()
    return {
        "pages": count,
        "characters": sum(per_page),
        "output": "text.txt",
        "per_page_chars": per_page[:cap],
        "per_page_chars_truncated": len(per_page) > cap,
    }


class Budget:
    """One page's CPU time and text size, checked after each step of reading it."""

    def __init__(self, cpu_seconds: float, max_chars: int) -> None:
        self.cpu_seconds = cpu_seconds
        self.max_chars = max_chars
        self.page = 0
        self.started = 0.0

    def start(self, number: int) -> None:
        self.page = number + 1
        # Thread CPU time: PDFium runs in this thread, and a loaded machine does not
        # make a page look slower than it is.
        self.started = time.thread_time()

    def check_time(self) -> None:
        used = time.thread_time() - self.started
        if used > self.cpu_seconds:
            self._over(
                f"took {used:.1f} s of CPU time to read; the limit is "
                f"{self.cpu_seconds:g} s a page (PDF_PAGE_CPU_SECONDS)",
                limit="cpu",
            )

    def check_chars(self, chars: int) -> None:
        if chars > self.max_chars:
            self._over(
                f"has {chars} characters of text; the limit is {self.max_chars} "
                "a page (PDF_PAGE_MAX_CHARS)",
                limit="chars",
            )

    def _over(self, what: str, *, limit: str) -> None:
        raise ProcessorError(
            f"Page {self.page} of the PDF {what}",
            code="page_over_budget",
            details={"page": self.page, "limit": limit},
        )


def _page_text(document: pypdfium2.PdfDocument, number: int, budget: Budget) -> str:
    import pypdfium2

    budget.start(number)
    try:
        # Closed at once, not left to the garbage collector: a page's objects are most
        # of PDFium's memory.
        with closing(document[number]) as page:
            budget.check_time()
            with closing(page.get_textpage()) as textpage:
                budget.check_time()
                budget.check_chars(textpage.count_chars())
                text = textpage.get_text_range()
        budget.check_time()
    except pypdfium2.PdfiumError as exc:
        raise ProcessorError(
            f"Page {number + 1} of the PDF could not be read: {_reason(exc)}",
            code="invalid_pdf",
            details={"page": number + 1},
        ) from None
    # PDFium ends lines with CRLF; text.txt uses LF, as most text tools expect.
    return text.replace("\r\n", "\n")


PROCESSOR = register(
    Processor(
        job_type="PDF_EXTRACT_TEXT",
        version="2.0",
        title="PDF text extraction",
        description=(
            "Extracts the text of every page to text.txt (pages separated by form feeds) "
            "and returns page and character counts."
        ),
        params_schema={
            "type": "object",
            "properties": {},
            "additionalProperties": False,
        },
        run=run,
        soft_time_limit=600,
        time_limit=660,
    )
)
