"""The upload page's Uppy in a real browser: parts go straight to object storage through the
Companion-shaped routes, survive a cut network, and each file becomes a job."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

import storage
from jobs.models import Job, JobState
from storage import multipart
from tests.browser.conftest import sign_in
from tests.conftest import wait_for_state, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

MIB = 1024 * 1024


def record_part_puts(page) -> list:
    """Every part PUT the page starts, retries included."""
    puts: list = []
    page.on("request", lambda request: puts.append(request)
            if request.method == "PUT" and "uploadId=" in request.url else None)
    return puts


def bytes_sent(puts: list) -> tuple[int, int]:
    """(bytes, failed PUTs): a finished PUT counts the Content-Length Chromium sent (Playwright
    gives no body for a Blob); one cut off by the network counts as a whole part, the most it sent."""
    finished = [int(p.all_headers()["content-length"]) for p in puts if p.failure is None]
    failed = sum(1 for p in puts if p.failure is not None)
    return sum(finished) + failed * max(finished), failed


def progress(page) -> int:
    return int(page.locator("[data-upload-progress] .progress").get_attribute("aria-valuenow") or 0)


def test_a_200_mib_upload_resumes_from_its_stored_parts_after_the_network_is_cut(
        chromium, web_server, worker, make_user, tmp_path):
    make_user("alice")
    size = 200 * MIB
    path = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // MIB):
            block = os.urandom(MIB)
            digest.update(block)
            out.write(block)
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, web_server.url, "alice")
    page.goto(f"{web_server.url}/upload/")
    page.select_option("#id_job_type", "SHA256")
    page.set_input_files("#id_file", str(path))
    puts = record_part_puts(page)
    ended: list = []
    page.on("requestfinished", lambda r: ended.append(r) if r in puts else None)
    page.on("requestfailed", lambda r: ended.append(r) if r in puts else None)
    page.click("[data-submit]")

    # Cut while parts are under way, not between two of them.
    wait_until(lambda: progress(page) >= 30 and len(puts) - len(ended) >= 3, timeout=120,
               what="30% of the upload sent and parts under way")
    context.set_offline(True)
    page.wait_for_timeout(3000)
    assert progress(page) < 100
    assert "offline, waiting for the network" in page.locator("[data-upload-text]").inner_text()
    context.set_offline(False)

    page.wait_for_url(f"{web_server.url}/jobs/*/", timeout=180_000)
    job = Job.objects.get(owner__username="alice")
    assert job.input_name == "big.bin" and job.input_size == size
    wait_for_state(job.id, {JobState.COMPLETED}, timeout=120)
    job.refresh_from_db()
    assert job.result["sha256"] == digest.hexdigest()
    # Parts the cut broke (Chromium lets some PUTs under way finish) are sent again, and only
    # those: not the whole file.
    sent, failed = bytes_sent(puts)
    # Each part went with its SHA-256, which the store checked the body against.
    assert all(p.headers.get("x-amz-checksum-sha256") for p in puts)
    assert size <= sent < 1.3 * size, (sent, failed, len(puts))
    assert errors == []
    context.close()


def test_three_files_dropped_at_once_each_become_a_job(chromium, web_server, worker, make_user):
    make_user("bob")
    page = chromium.new_page()
    sign_in(page, web_server.url, "bob")
    page.goto(f"{web_server.url}/upload/")
    page.select_option("#id_job_type", "CSV_ROW_COUNT")
    # A real drop: a DataTransfer holding three files, dropped on Uppy's Dashboard.
    page.evaluate("""() => {
        const dt = new DataTransfer();
        for (const [name, rows] of [["a.csv", 1], ["b.csv", 2], ["c.csv", 3]]) {
            const body = "id\\n" + Array.from({length: rows}, (_, i) => i + "\\n").join("");
            dt.items.add(new File([body], name, {type: "text/csv"}));
        }
        const target = document.querySelector(".uppy-Dashboard-inner");
        for (const type of ["dragenter", "dragover", "drop"]) {
            target.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
        }
    }""")
    page.wait_for_function("() => document.querySelectorAll('.uppy-Dashboard-Item').length === 3")
    page.click("[data-submit]")
    page.wait_for_selector("[data-created-jobs] li[data-job-id]:nth-child(3)", timeout=60_000)
    links = page.locator("[data-created-jobs] li[data-job-id] a")
    assert sorted(links.all_inner_texts()) == ["a.csv", "b.csv", "c.csv"]
    jobs = {job.input_name: job for job in Job.objects.filter(owner__username="bob")}
    assert sorted(jobs) == ["a.csv", "b.csv", "c.csv"]
    for name, rows in (("a.csv", 1), ("b.csv", 2), ("c.csv", 3)):
        wait_for_state(jobs[name].id, {JobState.COMPLETED}, timeout=60)
        jobs[name].refresh_from_db()
        assert jobs[name].result["rows"] == rows
    page.click("[data-created-jobs] li[data-job-id] a >> nth=0")
    page.wait_for_url(f"{web_server.url}/jobs/*/")


def test_bad_options_are_refused_before_any_byte_is_uploaded(chromium, web_server, make_user):
    make_user("carol")
    page = chromium.new_page()
    sign_in(page, web_server.url, "carol")
    page.goto(f"{web_server.url}/upload/")
    page.select_option("#id_job_type", "CSV_ROW_COUNT")
    page.fill('[name="CSV_ROW_COUNT-delimiter"]', "too long")
    page.set_input_files("#id_file", files=[{"name": "a.csv", "mimeType": "text/csv", "buffer": b"id\n1\n"}])
    puts = record_part_puts(page)
    page.click("[data-submit]")
    page.wait_for_selector("[data-upload-error]:not([hidden])")
    assert page.locator("[data-param-error]").count() >= 1
    assert puts == [] and not Job.objects.filter(owner__username="carol").exists()


def test_a_reloaded_page_resumes_the_upload_by_listing_the_stored_parts(
        chromium, web_server, worker, make_user, tmp_path):
    make_user("dave")
    # 12 parts of 5 MiB, 6 at a time: at 75% sent, at least 3 (usually 6) parts are stored.
    size = 60 * MIB
    data = os.urandom(size)
    path = tmp_path / "resume.bin"
    path.write_bytes(data)
    context = chromium.new_context()
    page = context.new_page()
    sign_in(page, web_server.url, "dave")
    page.goto(f"{web_server.url}/upload/")
    page.select_option("#id_job_type", "SHA256")
    page.set_input_files("#id_file", str(path))
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": 3 * MIB})
    page.click("[data-submit]")
    wait_until(lambda: progress(page) >= 75, timeout=90, what="75% of the upload sent")
    page.reload()

    # Golden Retriever kept the upload's id and key; the file is chosen again (the browser
    # keeps no file's bytes across a reload), and only the parts not stored yet are sent.
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    listings: list = []
    page.on("request", lambda r: listings.append(r.url) if r.method == "GET" and re.search(
        r"/api/v1/uploads/s3/multipart/[^/?]+\?key=", r.url) else None)
    puts = record_part_puts(page)
    page.select_option("#id_job_type", "SHA256")
    page.set_input_files("#id_file", str(path))
    page.click("[data-submit]")
    page.wait_for_url(f"{web_server.url}/jobs/*/", timeout=120_000)
    job = Job.objects.get(owner__username="dave")
    wait_for_state(job.id, {JobState.COMPLETED}, timeout=60)
    job.refresh_from_db()
    assert job.result["sha256"] == hashlib.sha256(data).hexdigest()
    after_reload, _ = bytes_sent(puts)
    assert len(listings) == 1
    assert 0 < after_reload <= 0.75 * size, after_reload
    context.close()


def test_the_upload_form_with_files_fits_a_390_px_phone_screen(chromium, web_server, make_user):
    make_user("erin")
    page = chromium.new_page(viewport={"width": 390, "height": 844})
    sign_in(page, web_server.url, "erin")
    page.goto(f"{web_server.url}/upload/")
    page.set_input_files("#id_file", files=[
        {"name": "a-rather-long-file-name-without-any-spaces-in-it.csv", "mimeType": "text/csv", "buffer": b"id\n1\n"},
        {"name": "b.csv", "mimeType": "text/csv", "buffer": b"id\n1\n"}])
    page.wait_for_function("() => document.querySelectorAll('.uppy-Dashboard-Item').length === 2")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390


def test_cancelling_an_upload_aborts_it_in_storage_and_makes_no_job(chromium, web_server, make_user, tmp_path):
    user = make_user("frank")
    path = tmp_path / "cancel.bin"
    path.write_bytes(os.urandom(40 * MIB))
    context = chromium.new_context()
    page = context.new_page()
    sign_in(page, web_server.url, "frank")
    page.goto(f"{web_server.url}/upload/")
    page.select_option("#id_job_type", "SHA256")
    page.set_input_files("#id_file", str(path))
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": 2 * MIB})
    page.click("[data-submit]")
    wait_until(lambda: progress(page) >= 10, timeout=60, what="10% of the upload sent")
    text = page.locator("[data-upload-text]").inner_text()
    assert "/s" in text and "left" in text, text  # speed and time left
    prefix = storage.owner_upload_prefix(user.pk)
    assert len(multipart.list_open(storage.input_bucket(), prefix)) == 1
    page.click('.uppy-StatusBar-actionCircleBtn[aria-label="Cancel"]')
    wait_until(lambda: multipart.list_open(storage.input_bucket(), prefix) == [], timeout=30,
               what="the multipart upload aborted")
    assert storage.list_keys(storage.input_bucket(), prefix) == []
    assert not Job.objects.filter(owner=user).exists()
    context.close()
