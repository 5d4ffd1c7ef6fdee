"""Headers built from user text: Content-Disposition from any name, and presigned part URLs
that bind each part's length. Checked against the real object store (SeaweedFS)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from werkzeug.http import parse_options_header

import storage
from jobs.models import Job, JobState
from storage import multipart
from storage.boto import client
from storage.keys import content_disposition, printable
from tests.factories import CSV, job_in_state

pytestmark = pytest.mark.django_db
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

names = st.text(st.characters(codec=None, exclude_categories=()), max_size=60) | st.sampled_from(
    ["evil\r\nSet-Cookie: a=b.csv", "a\x00b.csv", '"; filename="x.exe', "naïve résumé.csv", "\ud800.csv",
     "a\u2028b", "..\\..\\x", "%0d%0a.csv", "a;b=c.csv", ""])


def parsed_filename(header: str) -> str | None:
    """The filename an HTTP parser reads from the header (filename* wins, as RFC 6266 says)."""
    disposition, options = parse_options_header(header)
    assert disposition == "attachment", header
    return options.get("filename")


def expected_name(name: str) -> str:
    return printable(name).strip()[:200] or "download"


@given(name=names)
@settings(max_examples=300, deadline=None)
def test_content_disposition_from_any_name_parses_to_the_printable_name(name):
    header = content_disposition(name)
    assert header.isascii() and header.isprintable(), header  # no CR, LF, NUL or other controls
    assert parsed_filename(header) == expected_name(name)


@EXAMPLES
@given(name=names)
def test_a_presigned_download_serves_a_header_that_parses(user, upload, name):
    key = upload(user, b"a,b\n1,2\n", "data.csv")
    url = storage.presigned_get_url(storage.input_bucket(), key, expires=60, filename=name or "data.csv")
    signed = parse_qs(urlsplit(url).query)["response-content-disposition"][0]
    assert "\r" not in signed and "\n" not in signed and "\x00" not in signed
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text[:500]
    assert response.content == b"a,b\n1,2\n"
    assert parsed_filename(response.headers["content-disposition"]) == expected_name(name or "data.csv")


@pytest.fixture
def open_upload(user):
    bucket, key = storage.input_bucket(), storage.upload_key(user.pk, "parts.bin")
    upload_id = multipart.create(bucket, key)
    yield bucket, key, upload_id
    multipart.abort(bucket, key, upload_id)


def part_sizes(bucket: str, key: str, upload_id: str) -> dict[int, int]:
    parts = client().list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", [])
    return {p["PartNumber"]: p["Size"] for p in parts}


def test_a_part_url_refuses_a_put_longer_than_the_part(open_upload):
    bucket, key, upload_id = open_upload
    url = multipart.sign_part(bucket, key, upload_id, 1, expires=60, content_length=1000)
    longer = httpx.put(url, content=b"x" * 1500, timeout=30)
    assert longer.status_code == 403 and "SignatureDoesNotMatch" in longer.text, longer.text[:300]
    assert part_sizes(bucket, key, upload_id) == {}
    exact = httpx.put(url, content=b"x" * 1000, timeout=30)
    assert exact.status_code == 200 and exact.headers["etag"]
    assert part_sizes(bucket, key, upload_id) == {1: 1000}


def test_a_part_url_refuses_a_shorter_or_chunked_put(open_upload):
    bucket, key, upload_id = open_upload
    url = multipart.sign_part(bucket, key, upload_id, 1, expires=60, content_length=1000)
    assert httpx.put(url, content=b"x" * 999, timeout=30).status_code == 403

    def chunks():  # no Content-Length at all: Transfer-Encoding: chunked
        yield b"x" * 600
        yield b"x" * 600

    assert httpx.put(url, content=chunks(), timeout=30).status_code in (400, 403, 411)
    assert part_sizes(bucket, key, upload_id) == {}


@given(size=st.integers(1, 10**12), part_size=st.integers(5 * 1024**2, 64 * 1024**2))
def test_part_lengths_add_up_to_the_size(size, part_size):
    count = -(-size // part_size)
    lengths = [multipart.part_length(size, part_size, n) for n in range(1, count + 1)]
    assert sum(lengths) == size and all(0 < length <= part_size for length in lengths)


@EXAMPLES
@given(output=names, which=st.sampled_from(["result", "input"]))
def test_a_result_url_for_any_output_name_signs_a_clean_disposition(user, upload, output, which):
    job = completed_job(user, upload)
    client = APIClient()
    client.force_authenticate(user)
    # Query strings are UTF-8 on the wire; a surrogate arrives as bytes Django decodes with U+FFFD.
    query = urlencode({"output": output.encode("utf-8", "surrogatepass"), "which": which})
    response = client.get(f"/api/v1/jobs/{job.id}/result-url?{query}")
    assert response.status_code in (200, 400, 404), response.content[:500]
    if response.status_code == 200:
        signed = parse_qs(urlsplit(response.json()["url"]).query)["response-content-disposition"][0]
        assert signed.isprintable() and "\r" not in signed and "\n" not in signed
        assert parsed_filename(signed)
    else:
        assert set(response.json()) == {"error"}


@EXAMPLES
@given(output=names, which=st.sampled_from(["result", "input"]))
def test_the_download_page_for_any_output_name_redirects_to_a_clean_disposition_or_shows_a_page(
        user, upload, client, output, which):
    job = completed_job(user, upload)
    client.force_login(user)
    query = urlencode({"output": output.encode("utf-8", "surrogatepass"), "which": which})
    response = client.get(f"/jobs/{job.id}/download?{query}")
    assert response.status_code in (302, 400, 404), response.status_code
    if response.status_code == 302:
        signed = parse_qs(urlsplit(response["Location"]).query)["response-content-disposition"][0]
        assert signed.isprintable() and parsed_filename(signed)
    else:
        assert response["Content-Type"].startswith("text/html")


def completed_job(user, upload):
    """One COMPLETED job of the user's, run in this process, shared by a test's examples. Its
    stored name is hostile (as a row from before names were cleaned): the header must still be."""
    job = Job.objects.filter(owner=user, state=JobState.COMPLETED).first()
    if job is None:
        job = job_in_state(user, JobState.COMPLETED, input_key=upload(user, CSV))
        Job.objects.filter(pk=job.pk).update(input_name='evil"\r\nSet-Cookie: a=b\x7f.csv')
    return job
