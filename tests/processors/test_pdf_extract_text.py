"""PDF_EXTRACT_TEXT: page texts to text.txt, clear errors for anything that is not a
readable PDF."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader, PdfWriter

from processors import Cancelled, ProcessorError, get_processor
from processors.testing import MemoryContext, run_processor


def build_pdf(page_texts: list[str | None]) -> bytes:
    """A minimal PDF: one Helvetica text line per page (None: blank page)."""
    objects = {
        1: "<< /Type /Catalog /Pages 2 0 R >>",
        3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    kids = []
    for i, text in enumerate(page_texts):
        page_id, content_id = 4 + 2 * i, 5 + 2 * i
        kids.append(f"{page_id} 0 R")
        stream = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET" if text else ""
        objects[page_id] = (
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_id} 0 R >>"
        )
        objects[content_id] = (
            f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream"
        )
    objects[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n{objects[number]}\nendobj\n".encode()
    xref = len(out)
    size = max(objects) + 1
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offsets[n]:010d} 00000 n \n".encode() for n in range(1, size))
    out += (
        f"trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def rewrite(pdf: bytes, *, user_password: str | None = None) -> bytes:
    """Round-trip through pypdf's writer, optionally encrypting (RC4 needs no extras)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    if user_password is not None:
        writer.encrypt(
            user_password=user_password, owner_password="owner", algorithm="RC4-128"
        )
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def extract(data: bytes, **kwargs) -> tuple[dict, MemoryContext]:
    return run_processor("PDF_EXTRACT_TEXT", data, **kwargs)


def refusal(data: bytes, **kwargs) -> ProcessorError:
    with pytest.raises(ProcessorError) as exc:
        extract(data, **kwargs)
    return exc.value


def test_text_of_every_page_separated_by_form_feeds():
    result, ctx = extract(rewrite(build_pdf(["Hello PDF", None, "Page three"])))
    assert ctx.outputs == {"text.txt": b"Hello PDF\f\fPage three"}
    assert ctx.content_types == {"text.txt": "text/plain; charset=utf-8"}
    assert result == {
        "pages": 3,
        "characters": 19,
        "output": "text.txt",
        "per_page_chars": [9, 0, 10],
        "per_page_chars_truncated": False,
    }


def test_only_blank_pages_give_empty_text():
    result, ctx = extract(build_pdf([None, None]))
    assert (result["pages"], result["characters"], ctx.outputs["text.txt"]) == (
        2,
        0,
        b"\f",
    )


def test_per_page_list_is_capped(monkeypatch):
    from processors import conf

    monkeypatch.setattr(conf, "pdf_per_page_list_max", lambda: 2)
    result, _ = extract(build_pdf(["a", "bb", "ccc"]))
    assert result["per_page_chars"] == [1, 2]
    assert result["per_page_chars_truncated"] is True
    assert result["characters"] == 6


@pytest.mark.parametrize("chunked", [1, 7, 1000])
def test_chunked_input_is_spooled_whole(chunked):
    result, _ = extract(build_pdf(["Chunks"]), chunked_reads=chunked)
    assert result["characters"] == 6


def test_pdf_with_empty_user_password_is_opened():
    _, ctx = extract(rewrite(build_pdf(["Secret-ish"]), user_password=""))
    assert ctx.outputs["text.txt"] == b"Secret-ish"


def test_password_protected_pdf_fails_as_encrypted():
    error = refusal(rewrite(build_pdf(["Top secret"]), user_password="pw"))
    assert error.code == "encrypted"
    assert "encrypted with a password" in error.message


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        (b"", "not_a_pdf", "not a PDF"),
        (b"hello, world\n" * 100, "not_a_pdf", "not a PDF"),
        (bytes(range(256)) * 50, "not_a_pdf", "not a PDF"),
        (b"%PDF-1.4\n" + bytes(range(256)) * 20, "invalid_pdf", "could not be read"),
    ],
)
def test_not_a_pdf_or_garbage_is_a_clear_error(data, code, fragment):
    error = refusal(data)
    assert (error.code, fragment in error.message) == (code, True)


def test_truncated_pdf_is_a_clear_error_not_a_traceback():
    pdf = build_pdf(["Hello"])
    error = refusal(pdf[: len(pdf) // 2])
    assert error.code == "invalid_pdf"
    assert error.message.startswith("The PDF could not be read")


def test_declared_size_over_the_limit_is_refused_before_reading():
    ctx = MemoryContext(build_pdf(["x"]), input_size=10**10)
    with pytest.raises(ProcessorError) as exc:
        get_processor("PDF_EXTRACT_TEXT").run(ctx)
    assert exc.value.code == "input_too_large"
    assert ctx.progress_calls == []


def test_actual_size_over_the_limit_is_refused_while_reading(monkeypatch):
    from processors import conf

    monkeypatch.setattr(conf, "pdf_max_bytes", lambda: 100)
    error = refusal(build_pdf(["x"]), input_size=10, chunked_reads=64)
    assert error.code == "input_too_large"
    assert "more than 100" in error.message


def test_cancellation_between_pages_commits_no_output():
    ctx = MemoryContext(build_pdf(["a", "b", "c"]))
    ctx.cancel()
    with pytest.raises(Cancelled):
        get_processor("PDF_EXTRACT_TEXT").run(ctx)
    assert ctx.outputs == {}
