"""The whole web flow in a real browser: sign in, upload a CSV with a progress bar, watch
the job complete without reloading, and download the result."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from jobs.models import Job, JobState
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)
PlaywrightError = pytest.importorskip("playwright.sync_api").Error

ROWS = 60_000
CSV = b"id,name,amount\n" + b"".join(b"%d,name-%d,%d.50\n" % (i, i, i) for i in range(ROWS))
UPLOAD_BYTES_PER_SECOND = 1024 * 1024  # throttled, so that the progress bar visibly moves


def wait_for_job_page(page, timeout: float) -> None:
    """Until the upload is done and the page is the job's; fails at once with the page's upload error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(r"/jobs/[0-9a-f-]{36}/$", page.url):
            page.wait_for_load_state()
            return
        try:
            error = page.locator("[data-upload-error]:not([hidden])")
            if error.count():
                pytest.fail(f"the upload failed on the page: {error.inner_text()}")
            page.wait_for_timeout(100)
        except PlaywrightError:  # the page navigated while it was being looked at
            continue
    pytest.fail(f"no job page after {timeout}s; the page is {page.url}")


def test_sign_in_upload_a_csv_watch_it_complete_and_download_the_result(
        chromium, web_server, celery_process, make_user, tmp_path):
    make_user("alice")
    context = chromium.new_context(accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    sign_in(page, web_server.url, "alice")
    assert page.locator(".who").inner_text().startswith("alice")

    page.goto(f"{web_server.url}/upload/")
    page.select_option("#id_job_type", "CSV_ROW_COUNT")
    assert page.locator('fieldset[data-params-for="CSV_ROW_COUNT"]').is_visible()
    assert not page.locator('fieldset[data-params-for="JSON_CANONICALIZE"]').is_visible()
    csv_path = tmp_path / "sales.csv"
    csv_path.write_bytes(CSV)
    page.set_input_files("#id_file", str(csv_path))

    # Record every value the upload progress bar shows (reported out of the page, which
    # navigates to the job once the upload is done).
    shown: list[float] = []
    page.expose_function("reportUploadProgress", lambda value: shown.append(value))
    page.evaluate("""() => {
        const bar = document.querySelector('[data-upload-progress] .progress');
        new MutationObserver(() => window.reportUploadProgress(Number(bar.getAttribute('aria-valuenow'))))
            .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
    }""")
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": UPLOAD_BYTES_PER_SECOND})
    page.click("[data-submit]")
    page.wait_for_selector("[data-upload-progress]:not([hidden])", timeout=5000)
    assert "%" in page.locator("[data-upload-text]").inner_text()

    wait_for_job_page(page, timeout=60)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    moving = sorted({v for v in shown if 0 < v < 100})
    assert len(moving) >= 3, f"the upload progress bar should move; it showed {shown}"
    assert shown[-1] == 100
    job = Job.objects.get(owner__username="alice")
    assert job.input_name == "sales.csv" and job.input_size == len(CSV)

    # No worker yet: the page shows the job waiting. Then a worker starts, and the page
    # must follow the job to COMPLETED over its WebSocket, without a reload.
    assert page.locator("#job-body").get_attribute("data-state") in (JobState.CREATED, JobState.QUEUED)
    page.evaluate("() => { window.__sameDocument = true; }")
    celery_process("worker")
    page.wait_for_selector('#job-body[data-state="COMPLETED"]', timeout=60_000)
    assert page.evaluate("() => window.__sameDocument") is True
    assert page.locator("#job-body [data-state-badge]").first.inner_text() == "COMPLETED"
    assert f'"rows": {ROWS}' in page.locator("[data-result]").inner_text()

    with page.expect_download() as download_info:
        page.click("[data-download]")
    download = download_info.value
    assert download.suggested_filename == "sales.result.json"
    document = json.loads(Path(download.path()).read_bytes())
    assert document["job_id"] == str(job.id)
    assert document["result"]["rows"] == ROWS
    assert errors == []
    context.close()
