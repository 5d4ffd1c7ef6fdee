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


# --- PDFium route: budgets, encryption, page trees, generated texts ---

import zlib  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from processors import pdf_extract_text  # noqa: E402


def one_page_pdf(content: bytes) -> bytes:
    """One page whose content stream is `content`, Flate-compressed, with font /F1."""
    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
        + stream
        + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def many_glyphs(count: int) -> bytes:
    """`count` glyphs on lines of 600, each at its own position (none is deduplicated)."""
    moves = b"".join(
        b"1 %d Td (x) Tj\n" % (0 if i % 600 else -1) for i in range(count)
    )
    return b"BT /F1 1 Tf " + moves + b" ET"


def test_progress_is_reported_once_per_page():
    _, ctx = extract(build_pdf(["a", "b", "c", "d"]))
    assert len(ctx.progress_calls) == 1 + 4  # the spooled chunk, then one per page


def test_a_page_with_more_text_than_its_budget_fails_with_page_over_budget(monkeypatch):
    monkeypatch.setattr(pdf_extract_text, "page_max_chars", lambda: 5)
    error = refusal(build_pdf(["fine", "far too long"]))
    assert (error.code, error.details) == ("page_over_budget", {"page": 2, "limit": "chars"})
    assert "PDF_PAGE_MAX_CHARS" in error.message


def test_a_page_over_its_cpu_budget_fails_with_page_over_budget(monkeypatch):
    monkeypatch.setattr(pdf_extract_text, "page_cpu_seconds", lambda: 1e-6)
    error = refusal(one_page_pdf(many_glyphs(20_000)))
    assert (error.code, error.details) == ("page_over_budget", {"page": 1, "limit": "cpu"})
    assert "PDF_PAGE_CPU_SECONDS" in error.message


def test_200k_text_operators_on_one_page_are_read_in_linear_time():
    # pypdf's extractor is quadratic here; PDFium reads it well inside the page budget.
    result, _ = extract(one_page_pdf(many_glyphs(200_000)))
    assert result["pages"] == 1
    assert result["characters"] >= 200_000


def test_aes_256_with_empty_user_password_is_opened():
    pdf = build_pdf(["AES inside"])
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    _, ctx = extract(buffer.getvalue())
    assert ctx.outputs["text.txt"] == b"AES inside"


def test_aes_256_with_a_password_fails_as_encrypted():
    pdf = build_pdf(["AES inside"])
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password="pw", owner_password="owner", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert refusal(buffer.getvalue()).code == "encrypted"


def test_a_page_tree_without_pages_gives_no_pages_and_empty_text():
    result, ctx = extract(build_pdf([]))
    assert (result["pages"], result["characters"], ctx.outputs["text.txt"]) == (0, 0, b"")


ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
word = st.text(st.sampled_from(ALNUM), min_size=1, max_size=12)
page_text = st.lists(word, min_size=1, max_size=8).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(pages=st.lists(st.one_of(st.none(), page_text), min_size=1, max_size=6))
def test_generated_pages_come_back_as_written(pages):
    result, ctx = extract(build_pdf(pages))
    texts = [text or "" for text in pages]
    assert ctx.outputs["text.txt"] == "\f".join(texts).encode()
    assert result["per_page_chars"] == [len(text) for text in texts]


class CancelAfterProgress(MemoryContext):
    """Cancels the job once `after` progress calls were made."""

    def __init__(self, data: bytes, after: int) -> None:
        super().__init__(data)
        self.after = after

    def progress(self, bytes_read: int) -> None:
        super().progress(bytes_read)
        if len(self.progress_calls) == self.after:
            self.cancel()


def test_a_cancel_between_pages_stops_pdfiums_process_and_commits_no_output():
    import psutil

    before = {child.pid for child in psutil.Process().children()}  # the test stack's servers
    ctx = CancelAfterProgress(build_pdf([f"page {n}" for n in range(300)]), after=3)
    with pytest.raises(Cancelled):
        get_processor("PDF_EXTRACT_TEXT").run(ctx)
    assert ctx.outputs == {} and ctx.aborted == ["text.txt"]
    assert len(ctx.progress_calls) == 4  # the chunk, two pages, and the one that raised
    after = {child.pid for child in psutil.Process().children()}
    assert after == before  # the forked reader was killed and reaped


MEMORY_LIMITED_RUN = """
import resource, sys, zlib
sys.path.insert(0, {root!r})
from processors import ProcessorError
from processors.testing import run_processor
data = open({path!r}, "rb").read()
with open("/proc/self/status") as status:
    base = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:"))
resource.setrlimit(resource.RLIMIT_DATA, (base + 256 * 2**20, resource.RLIM_INFINITY))
try:
    run_processor("PDF_EXTRACT_TEXT", data)
    print("completed")
except MemoryError:
    print("MemoryError")
except ProcessorError as exc:
    print(exc.code)
"""


@pytest.mark.slow
def test_a_page_that_makes_pdfium_allocate_past_the_memory_limit_is_a_memory_error(tmp_path):
    """Two million glyphs in 60 KB need about 1 GiB in PDFium, which aborts its process when
    an allocation fails: the processor reports a MemoryError (the sandbox's resource_limit),
    not a crash. Run in a fresh interpreter held to 256 MiB, as a job's process is."""
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "glyphs.pdf"
    path.write_bytes(one_page_pdf(many_glyphs(2_000_000)))
    assert path.stat().st_size < 100_000
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_LIMITED_RUN.format(root=root, path=str(path))],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.stdout.strip().splitlines()[-1:] == ["MemoryError"], done.stderr[-2000:]


CPU_LIMITED_RUN = """
import resource, signal, sys
sys.path.insert(0, {root!r})
from processors import ProcessorError
from processors.testing import run_processor

class CpuLimit(BaseException):
    pass

def on_xcpu(signum, frame):
    raise CpuLimit()

signal.signal(signal.SIGXCPU, on_xcpu)  # as a job's process has
data = open({path!r}, "rb").read()
usage = resource.getrusage(resource.RUSAGE_SELF)
resource.setrlimit(resource.RLIMIT_CPU, (int(usage.ru_utime + usage.ru_stime) + 2, resource.RLIM_INFINITY))
try:
    run_processor("PDF_EXTRACT_TEXT", data)
    print("completed")
except CpuLimit:
    print("CpuLimit")
"""


@pytest.mark.slow
def test_pdfiums_process_is_held_to_what_is_left_of_the_jobs_cpu_limit(tmp_path):
    """Sixty pages of 200,000 glyphs take about 12 s of CPU; with 2 s or less left, the forked reader
    gets SIGXCPU and the job's process raises its own CPU-limit exception."""
    import subprocess
    import sys
    from pathlib import Path

    page = zlib.compress(many_glyphs(200_000), 9)
    pages = [None] * 60
    pdf = build_pdf(pages)
    # build_pdf writes empty content streams: swap each for the heavy one, Flate-compressed.
    heavy = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(page) + page + b"\nendstream"
    pdf = pdf.replace(b"<< /Length 0 >>\nstream\n\nendstream", heavy)
    pdf = rewrite(pdf)  # fixes the cross-reference offsets
    path = tmp_path / "heavy.pdf"
    path.write_bytes(pdf)
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", CPU_LIMITED_RUN.format(root=root, path=str(path))],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.stdout.strip().splitlines()[-1:] == ["CpuLimit"], done.stderr[-2000:]
