"""Every page in a real browser, with sample jobs in each state; screenshots of each.

Set UI_SCREENSHOTS_DIR=docs/screenshots to refresh the pictures in docs/ui.md; otherwise
they go to the test's temporary directory. Either way the test checks that each page
renders what it should without a script error, with JavaScript and (the upload form)
without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobs.models import JobState
from jobs.services.actions import job_cancel
from jobs.services.create import job_create
from jobs.services.execution import job_claim, job_kill
from tests.browser.conftest import sign_in
from tests.conftest import wait_for_state

pytestmark = pytest.mark.django_db(transaction=True)
pytest.importorskip("playwright.sync_api")

VIEWPORT = {"width": 1280, "height": 860}
PEOPLE = b"name,city,age,joined\n" + b"".join(
    b"person %d,%s,%d,2024-%02d-%02d\n" % (i, (b"Berlin", b"Lisbon", b"Oslo", b"Quito")[i % 4], 20 + i % 50,
                                          1 + i % 12, 1 + i % 28) for i in range(500))


def test_every_page_renders_in_a_browser(chromium, web_server, celery_process, make_user, upload, tmp_path):
    out = Path(os.environ.get("UI_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    alice = make_user("alice")
    make_user("operator", staff=True)

    def create(data: bytes, name: str, job_type: str, params: dict | None = None):
        key = upload(alice, data, name)
        return job_create(owner=alice, job_type=job_type, input_key=key, params=params).job

    failed = create(b"name,city\n\xff\xfe bad bytes,x\n", "export-latin1.csv", "CSV_ROW_COUNT")
    cancelled = create(PEOPLE, "old-list.csv", "CSV_ROW_COUNT")
    dead = create(PEOPLE, "flaky-source.csv", "SHA256")
    counted = create(PEOPLE, "people.csv", "CSV_ROW_COUNT")
    slow = create(os.urandom(6 * 1024 * 1024), "backup.tar", "TEST_SLOW", {"chunk_delay": 1.5})
    profiled = create(PEOPLE, "people-profile.csv", "CSV_PROFILE")
    job_cancel(job=cancelled, actor=f"user:{alice.pk}")
    claimed = job_claim(job_id=dead.id, worker="screenshot")
    job_kill(job_id=dead.id, expected=("PROCESSING",), claim_token=claimed.claim_token,
                      actor="worker:screenshot",
                      reason="attempts exhausted (5/5); last error: StorageUnavailable: s3 endpoint timed out",
                      traceback="Traceback (most recent call last):\n  ...\nStorageUnavailable: timed out")
    celery_process("worker", concurrency=2)
    for job in (failed, counted, profiled):
        wait_for_state(job.id, {JobState.COMPLETED, JobState.FAILED}, timeout=60)
    wait_for_state(slow.id, JobState.PROCESSING, timeout=60)

    errors: list[str] = []

    def new_page(context):
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    signed_out = chromium.new_context(viewport=VIEWPORT)
    page = new_page(signed_out)
    page.goto(f"{web_server.url}/login/")
    page.screenshot(path=str(out / "login.png"))

    context = chromium.new_context(viewport=VIEWPORT)
    page = new_page(context)
    sign_in(page, web_server.url, "alice")
    page.wait_for_timeout(1500)  # some progress of the running job
    assert page.locator("tr[data-job-id]").count() == 6
    page.screenshot(path=str(out / "job-list.png"), full_page=True)

    page.goto(f"{web_server.url}/upload/")
    page.select_option("#id_job_type", "CSV_ROW_COUNT")
    page.screenshot(path=str(out / "upload.png"), full_page=True)

    page.goto(f"{web_server.url}/jobs/{slow.id}/")
    page.wait_for_function("() => document.querySelector('[data-eta]').textContent.includes('left')", timeout=20_000)
    page.screenshot(path=str(out / "job-processing.png"), full_page=True)

    page.goto(f"{web_server.url}/jobs/{profiled.id}/")
    assert page.locator("#job-body").get_attribute("data-state") == JobState.COMPLETED
    page.screenshot(path=str(out / "job-completed.png"), full_page=True)

    page.goto(f"{web_server.url}/jobs/{failed.id}/")
    assert page.locator("[data-error]").is_visible()
    page.screenshot(path=str(out / "job-failed.png"), full_page=True)

    staff = chromium.new_context(viewport=VIEWPORT)
    page = new_page(staff)
    sign_in(page, web_server.url, "operator")
    page.goto(f"{web_server.url}/dead-letters/")
    assert "flaky-source.csv" in page.content()
    page.screenshot(path=str(out / "dead-letters.png"), full_page=True)

    # Without JavaScript: every type's options show, grouped, and the no-JS limit is stated.
    no_js = chromium.new_context(viewport=VIEWPORT, java_script_enabled=False)
    page = new_page(no_js)
    sign_in(page, web_server.url, "alice")
    page.goto(f"{web_server.url}/upload/")
    assert page.locator('fieldset[data-params-for="JSON_CANONICALIZE"]').is_visible()
    assert page.locator("text=Without JavaScript, files up to").is_visible()
    page.screenshot(path=str(out / "upload-without-javascript.png"), full_page=True)

    # Don't leave the worker busy for the others; on a slow machine it may be done already.
    slow.refresh_from_db()
    if slow.state == JobState.PROCESSING:
        job_cancel(job=slow, actor="test")
    assert errors == []
    for ctx in (signed_out, context, staff, no_js):
        ctx.close()
