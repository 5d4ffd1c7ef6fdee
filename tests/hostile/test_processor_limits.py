"""Hostile inputs against a real worker: every job runs in a child process held to CPU-time,
memory and wall-clock limits. Going over one fails the job on its first attempt with
`resource_limit` (never RETRYING, never DEAD, no worker death), leaves no output object,
and the worker's pool processes stay under their RSS goal. Cancel lands within about a
second whatever the processor does. A result the database cannot store fails with
`invalid_result` and a message free of database internals.

The test worker runs with small limits (LIMITS) so that each case ends in seconds.
"""

from __future__ import annotations

import io
import json
import time
import zlib

import psutil
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

import storage
from jobs import runner
from jobs.models import Job, JobState
from jobs.services.actions import job_cancel
from jobs.services.create import job_create
from tests.conftest import wait_for_state, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
S = JobState
MiB = 1024 * 1024
LIMITS = {"JOB_CPU_LIMIT_SECONDS": "5", "JOB_MEMORY_LIMIT_MB": "256"}
RSS_GOAL = 200 * MiB  # each pool process, and each processor child left running
CSV = b"name,age\nann,31\nbob,42\n"


@pytest.fixture
def limited(celery_process):
    return celery_process("worker", name="limited", extra_env=LIMITS)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pool_processes(worker) -> list[int]:
    return [child.pid for child in psutil.Process(worker.proc.pid).children()]


def assert_worker_rss_under_goal(worker) -> None:
    """Every process under the worker's main process (pool processes and processor children)."""
    sizes = {pid: rss(pid) for pid in worker.child_pids()}
    assert sizes and all(size < RSS_GOAL for size in sizes.values()), {p: s // MiB for p, s in sizes.items()}


def output_objects(job) -> list[str]:
    return storage.list_keys(storage.output_bucket(), storage.output_prefix(job.id))


def assert_failed_on_first_attempt(job, code: str) -> None:
    assert (job.state, job.error_code, job.attempts, job.worker_deaths) == (S.FAILED, code, 1, 0), job.error_message
    assert not job.events.filter(to_state__in=[S.RETRYING, S.DEAD]).exists()
    assert output_objects(job) == []


def put_stream(owner, name: str, chunks) -> str:
    """Streams chunks into the input bucket; the test never holds the whole object."""
    key = storage.upload_key(owner.pk, name)
    with storage.open_write(storage.input_bucket(), key) as writer:
        for chunk in chunks:
            writer.write(chunk)
    return key


def raw_pdf(content: bytes) -> bytes:
    """A one-page PDF whose page content is `content`, Flate-compressed, with font /F1."""
    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    return pdf_file(objects)


def many_glyphs(count: int) -> bytes:
    """`count` glyphs on lines of 600, each at its own position (none is deduplicated)."""
    return b"BT /F1 1 Tf " + b"".join(b"1 %d Td (x) Tj\n" % (0 if i % 600 else -1) for i in range(count)) + b" ET"


@pytest.mark.slow
def test_a_small_pdf_with_200k_text_operators_is_read_in_bounded_time(user, upload, limited):
    """pypdf is quadratic here (82 s); PDFium is linear and reads it well inside the limits."""
    # Positions varied a little, so the stream does not compress to almost nothing: about 26 KB.
    content = b"".join(b"BT /F1 12 Tf %d 0 Td (x) Tj ET\n" % (i % 13) for i in range(200_000))
    data = raw_pdf(content)
    assert 20_000 < len(data) < 64_000
    job = job_create(owner=user, job_type="PDF_EXTRACT_TEXT", input_key=upload(user, data, "ops.pdf")).job

    job = wait_for_state(job.id, {S.FAILED, S.COMPLETED, S.DEAD}, timeout=40)

    assert (job.state, job.attempts, job.worker_deaths) == (S.COMPLETED, 1, 0), job.error_message
    assert job.result["pages"] == 1
    assert_worker_rss_under_goal(limited)


@pytest.mark.slow
def test_a_pdf_decompression_bomb_is_read_within_the_limits(user, upload, limited):
    """130 KB of PDF inflate to 68 MB of page content (close to 500 MiB in pypdf's parser);
    PDFium holds the inflated stream and little more, under the memory limit."""
    data = raw_pdf(b"BT (x) Tj ET\n" * (5 * MiB))
    assert len(data) < 256 * 1024
    job = job_create(owner=user, job_type="PDF_EXTRACT_TEXT", input_key=upload(user, data, "bomb.pdf")).job

    job = wait_for_state(job.id, {S.FAILED, S.COMPLETED, S.DEAD}, timeout=40)

    assert (job.state, job.attempts, job.worker_deaths) == (S.COMPLETED, 1, 0), job.error_message
    assert job.result["pages"] == 1
    assert_worker_rss_under_goal(limited)


@pytest.mark.slow
def test_a_small_pdf_whose_page_needs_a_gibibyte_fails_on_its_memory_limit(user, upload, limited):
    """Two million glyphs in 60 KB take about 1 GiB of PDFium's page objects. PDFium aborts
    its process when an allocation fails; the job fails with resource_limit, no worker dies."""
    data = raw_pdf(many_glyphs(2_000_000))
    assert len(data) < 100_000
    job = job_create(owner=user, job_type="PDF_EXTRACT_TEXT", input_key=upload(user, data, "glyphs.pdf")).job

    job = wait_for_state(job.id, {S.FAILED, S.COMPLETED, S.DEAD}, timeout=40)

    assert_failed_on_first_attempt(job, "resource_limit")
    assert "(memory)" in job.error_message
    assert_worker_rss_under_goal(limited)


def many_pages_pdf(content: bytes, pages: int) -> bytes:
    """`pages` pages that share one Flate-compressed content stream, with font /F1."""
    stream = zlib.compress(content, 9)
    kids = b" ".join(b"%d 0 R" % (5 + n) for n in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ] + [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
         b"/Contents 4 0 R >>"] * pages
    return pdf_file(objects)


def processor_grandchildren(worker) -> list[int]:
    """Processes forked by a processor child (worker -> pool process -> child -> these)."""
    top = psutil.Process(worker.proc.pid)
    near = {top.pid} | {child.pid for child in top.children()}
    return [p.pid for p in top.children(recursive=True) if p.ppid() not in near]


@pytest.mark.slow
def test_a_pdf_job_reading_heavy_pages_is_cancelled_within_two_seconds(user, upload, limited):
    """Sixty pages of 200,000 glyphs take about 12 s of CPU in PDFium's forked reader: a
    cancel lands between pages, and the reader is gone with it."""
    data = many_pages_pdf(many_glyphs(200_000), 60)
    job = job_create(owner=user, job_type="PDF_EXTRACT_TEXT", input_key=upload(user, data, "heavy.pdf")).job
    wait_until(lambda: Job.objects.filter(pk=job.id, state=S.PROCESSING).exists(), 30, "the job to be running")
    wait_until(lambda: processor_grandchildren(limited), 10, "PDFium's reader to start")
    time.sleep(0.5)

    job_cancel(job=Job.objects.get(pk=job.id), actor="user:test")
    job = wait_for_state(job.id, {S.CANCELLED, S.COMPLETED, S.FAILED}, timeout=2)  # the bound: about a second

    assert job.state == S.CANCELLED
    assert output_objects(job) == []
    wait_until(lambda: not processor_grandchildren(limited), 2, "PDFium's reader to be gone")


@pytest.mark.slow
def test_a_csv_with_one_200_mib_multi_line_record_fails_early_with_record_too_large(user, limited):
    """Quoted fields with a line break each: one record of 200 MiB over 3.3 million lines.
    The record-size check (CSV_MAX_RECORD_CHARS, 16 Mi characters) refuses it while it is
    read, long before the memory limit."""
    field = b'"' + b"v" * 60 + b'\n",'  # 64 bytes
    chunk = field * (MiB // len(field))

    def body():
        yield b"a,b\n"
        for _ in range(200):
            yield chunk
        yield b"x\n"

    key = put_stream(user, "record.csv", body())
    assert storage.head(storage.input_bucket(), key).size > 200 * MiB
    job = job_create(owner=user, job_type="CSV_PROFILE", input_key=key).job

    job = wait_for_state(job.id, {S.FAILED, S.COMPLETED, S.DEAD}, timeout=60)

    assert_failed_on_first_attempt(job, "record_too_large")
    assert "line 2" in job.error_message
    assert job.progress_bytes < 64 * MiB  # refused early: most of the object was never read
    assert_worker_rss_under_goal(limited)


@pytest.mark.slow
def test_a_json_document_that_grows_past_the_memory_limit_when_parsed_fails_on_it(user, upload, limited):
    """19 MiB of small objects take over 500 MiB once parsed and canonicalized."""
    data = b"[" + b'{"a":1.5},' * 2_000_000 + b"{}]"
    job = job_create(owner=user, job_type="JSON_CANONICALIZE", input_key=upload(user, data, "big.json")).job

    job = wait_for_state(job.id, {S.FAILED, S.COMPLETED, S.DEAD}, timeout=40)

    assert_failed_on_first_attempt(job, "resource_limit")
    assert "(memory)" in job.error_message
    assert_worker_rss_under_goal(limited)


def test_a_job_that_allocates_past_its_memory_limit_fails_and_the_worker_runs_the_next_job(user, upload, limited):
    pools = pool_processes(limited)
    job = job_create(owner=user, job_type="TEST_ALLOCATE", input_key=upload(user, b"x"), params={"mib": 4096}).job

    job = wait_for_state(job.id, {S.FAILED, S.COMPLETED, S.DEAD}, timeout=30)

    assert_failed_on_first_attempt(job, "resource_limit")
    assert "(memory)" in job.error_message
    assert_worker_rss_under_goal(limited)
    after = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=upload(user, CSV)).job
    assert wait_for_state(after.id, S.COMPLETED, timeout=30).result["rows"] == 2
    assert pool_processes(limited) == pools  # no pool process died


def test_a_cpu_bound_job_fails_on_its_cpu_limit(user, upload, limited):
    job = job_create(owner=user, job_type="TEST_SPIN", input_key=upload(user, b"x"), params={"seconds": 60}).job

    job = wait_for_state(job.id, {S.FAILED, S.COMPLETED, S.DEAD}, timeout=30)

    assert_failed_on_first_attempt(job, "resource_limit")
    assert "(cpu)" in job.error_message


def test_a_job_past_its_processors_time_limit_fails_with_time(user, upload, limited):
    job = job_create(owner=user, job_type="TEST_SLEEP", input_key=upload(user, b"x"), params={"seconds": 60}).job

    job = wait_for_state(job.id, {S.FAILED, S.COMPLETED, S.DEAD}, timeout=30)

    assert_failed_on_first_attempt(job, "resource_limit")
    assert "(time)" in job.error_message


def test_a_cpu_bound_job_that_never_reports_progress_is_cancelled_within_two_seconds(user, upload, limited):
    job = job_create(owner=user, job_type="TEST_SPIN", input_key=upload(user, b"x"), params={"seconds": 4}).job
    wait_until(lambda: Job.objects.filter(pk=job.id, state=S.PROCESSING).exists(), 30, "the job to be running")
    time.sleep(0.5)  # well inside the loop, which never calls ctx.progress

    job_cancel(job=Job.objects.get(pk=job.id), actor="user:test")
    job = wait_for_state(job.id, {S.CANCELLED, S.COMPLETED}, timeout=2)  # the bound: about a second

    assert job.state == S.CANCELLED
    assert output_objects(job) == []


def test_a_nul_in_a_csv_header_fails_the_job_with_invalid_result_and_leaves_no_object(user, upload, limited):
    job = job_create(owner=user, job_type="CSV_PROFILE", input_key=upload(user, b"na\x00me,age\nann,31\n")).job

    job = wait_for_state(job.id, {S.FAILED, S.COMPLETED, S.DEAD}, timeout=30)

    assert_failed_on_first_attempt(job, "invalid_result")
    assert "NUL" in job.error_message and "result.header[0]" in job.error_message


# --- in this process: the runner's own functions, a real processor child, real S3 and PostgreSQL ---

cell = st.text(st.characters(codec="utf-8", exclude_characters='\r\n,"\x00'), max_size=6)


@examples(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(cell, min_size=1, max_size=4), row=st.lists(cell, min_size=1, max_size=4),
       in_header=st.booleans(), where=st.integers(0, 10), job_type=st.sampled_from(["CSV_PROFILE", "CSV_ROW_COUNT"]))
def test_a_nul_anywhere_in_a_csv_is_never_dead_and_never_shows_database_text(
        user, upload, header, row, in_header, where, job_type):
    target = header if in_header else row
    index = where % len(target)
    target[index] = target[index][: where % 3] + "\x00" + target[index][where % 3:]
    data = (",".join(header) + "\n" + ",".join(row) + "\n").encode()
    job = job_create(owner=user, job_type=job_type, input_key=upload(user, data)).job

    outcome = runner.job_run(job_id=job.id, worker="hostile")

    job.refresh_from_db()
    # CSV_ROW_COUNT's result holds only the header: a NUL in a data row is not in it.
    assert outcome in (S.FAILED, S.COMPLETED) and job.state == outcome
    if outcome == S.FAILED:
        assert job.error_code == "invalid_result" and "NUL" in job.error_message
        assert not any(word in job.error_message.lower() for word in ("jsonb", "psycopg", "unicode escape", "sql"))
        assert output_objects(job) == []
    else:
        assert "\x00" not in json.dumps(job.result, ensure_ascii=False)


def test_a_lone_surrogate_in_a_result_fails_with_invalid_result(user, upload):
    job = job_create(owner=user, job_type="TEST_RESULT", input_key=upload(user, b"x"), params={"kind": "surrogate"}).job

    assert runner.job_run(job_id=job.id, worker="hostile") == S.FAILED

    job.refresh_from_db()
    assert (job.error_code, job.attempts) == ("invalid_result", 1)
    assert "surrogate" in job.error_message
    assert output_objects(job) == []


def test_a_huge_result_is_stored_as_a_marker_and_kept_whole_in_result_json(user, upload, settings):
    job = job_create(owner=user, job_type="TEST_RESULT", input_key=upload(user, b"x"), params={"kind": "huge"}).job

    assert runner.job_run(job_id=job.id, worker="hostile") == S.COMPLETED

    job.refresh_from_db()
    assert job.result["truncated"] is True and job.result["max_bytes"] == settings.JOB_RESULT_MAX_BYTES
    assert len(json.dumps(job.result)) < 1024
    document = json.loads(storage.read_bytes(storage.output_bucket(), storage.output_key(job.id, "result.json"),
                                             64 * MiB))
    assert len(document["result"]["items"]) == 200_000


def test_a_long_string_in_a_result_is_cut_with_a_marker(user, upload, settings):
    job = job_create(owner=user, job_type="TEST_RESULT", input_key=upload(user, b"abc"),
                     params={"kind": "long_string"}).job

    assert runner.job_run(job_id=job.id, worker="hostile") == S.COMPLETED

    job.refresh_from_db()
    limit = settings.JOB_RESULT_MAX_STRING_CHARS
    assert job.result["text"] == "y" * limit + f"…[truncated {100_000 - limit} characters]"
    assert job.result["bytes"] == 3


def pdf_file(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1, the first the catalog), with its xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()
