"""PDF_EXTRACT_TEXT: text of every page to text.txt, pages separated by form feeds.

A PDF is read from its end (the cross-reference table sits there), so pypdf needs
random access. The input stream is not seekable, so it is spooled into memory, which
is why the input is capped by PDF_MAX_BYTES (checked on the declared size before
reading and again while reading, since a declared size can be wrong). Memory, not a
temp file: the platform never writes inputs to local disk.

Encryption: a PDF encrypted with an empty user password opens in every viewer without
a prompt, so it is decrypted and extracted; one that needs a real password fails with
code "encrypted".
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

from processors import conf
from processors._streams import iter_chunks
from processors.base import Cancelled, Processor, ProcessorContext, ProcessorError
from processors.registry import register

if TYPE_CHECKING:
    from pypdf import PdfReader

# pypdf logs a warning per oddity in a damaged file; the job result already says what
# failed, so keep worker logs readable.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def _spool(ctx: ProcessorContext, limit: int) -> io.BytesIO:
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
    spool.seek(0)
    return spool


def _open(spool: io.BytesIO) -> PdfReader:
    # Imported here, not at the top: pypdf adds its memory to every worker process that
    # imports it, and only PDF jobs need it.
    from pypdf import PdfReader

    head = spool.getvalue()[:1024]
    if b"%PDF-" not in head:
        raise ProcessorError(
            "The input is not a PDF (no %PDF- header)", code="not_a_pdf"
        )
    try:
        reader = PdfReader(spool)
        if reader.is_encrypted:
            _decrypt(reader)
        return reader
    except ProcessorError:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files
        raise ProcessorError(
            f"The PDF could not be read: {_reason(exc)}", code="invalid_pdf"
        ) from None


def _decrypt(reader: PdfReader) -> None:
    from pypdf.errors import DependencyError

    try:
        opened = reader.decrypt("")
    except DependencyError as exc:
        raise ProcessorError(
            f"The PDF is encrypted and cannot be opened here: {exc}", code="encrypted"
        ) from None
    if not opened:
        raise ProcessorError(
            "The PDF is encrypted with a password; remove the password and upload it again",
            code="encrypted",
        )


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:300]


def run(ctx: ProcessorContext) -> dict:
    reader = _open(_spool(ctx, conf.pdf_max_bytes()))
    try:
        pages = reader.pages
        count = len(pages)
    except Exception as exc:  # noqa: BLE001 - as above: damaged xref/page tree
        raise ProcessorError(
            f"The PDF could not be read: {_reason(exc)}", code="invalid_pdf"
        ) from None
    max_pages = conf.pdf_max_pages()
    if count > max_pages:
        raise ProcessorError(
            f"The PDF has {count} pages; the limit is {max_pages} (PDF_MAX_PAGES)",
            code="too_many_pages",
        )
    per_page: list[int] = []
    with ctx.open_output("text.txt", "text/plain; charset=utf-8") as out:
        for number in range(count):
            # Extraction of a big document takes a while: let a cancel land between pages.
            ctx.progress(ctx.input_size)
            text = _page_text(reader, number)
            if number:
                out.write(b"\f")
            out.write(text.encode("utf-8", "replace"))
            per_page.append(len(text))
    cap = conf.pdf_per_page_list_max()
    return {
        "pages": count,
        "characters": sum(per_page),
        "output": "text.txt",
        "per_page_chars": per_page[:cap],
        "per_page_chars_truncated": len(per_page) > cap,
    }


def _page_text(reader: PdfReader, number: int) -> str:
    try:
        return reader.pages[number].extract_text() or ""
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - any pypdf failure on one page is bad input
        raise ProcessorError(
            f"Page {number + 1} of the PDF could not be read: {_reason(exc)}",
            code="invalid_pdf",
            details={"page": number + 1},
        ) from None


PROCESSOR = register(
    Processor(
        job_type="PDF_EXTRACT_TEXT",
        version="1.0",
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
