"""Every page in a real browser, on a desktop (1280×800) and a phone (390×844), with sample jobs
in each state; screenshots of each at both sizes.

On each page, at each size, nothing is wider than the viewport (`scrollWidth` ≤ its width:
the page never scrolls sideways), and no script fails. The dashboard's two charts are drawn
with data. Set UI_SCREENSHOTS_DIR=docs/screenshots to refresh the pictures in docs/ui.md
(`<page>.png` on the desktop, `<page>-phone.png` on the phone); otherwise they go to the
test's temporary directory.
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

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
pytest.importorskip("playwright.sync_api")

SIZES = {"": {"width": 1280, "height": 800}, "-phone": {"width": 390, "height": 844}}
PEOPLE = b"name,city,age,joined\n" + b"".join(
    b"person %d,%s,%d,2024-%02d-%02d\n" % (i, (b"Berlin", b"Lisbon", b"Oslo", b"Quito")[i % 4], 20 + i % 50,
                                          1 + i % 12, 1 + i % 28) for i in range(500))
LONG_NAME = "quarterly-revenue-report_northern-region_final-v2_reviewed-by-finance_2026-11-30.csv"
UNBROKEN_NAME = "averyveryverylongfilenamewithoutanyseparatorsthatgoesonandonforever.csv"


def page_width(page) -> tuple[int, int]:
    return page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")


def test_every_page_fits_a_phone_and_a_desktop(chromium, web_server, celery_process, make_user, upload, tmp_path):
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
    counted = create(PEOPLE, LONG_NAME, "CSV_ROW_COUNT")
    hashed = create(PEOPLE, UNBROKEN_NAME, "SHA256")
    slow = create(os.urandom(6 * 1024 * 1024), "backup.tar", "TEST_SLOW", {"chunk_delay": 1.5})
    profiled = create(PEOPLE, "people-profile.csv", "CSV_PROFILE")
    job_cancel(job=cancelled, actor=f"user:{alice.pk}")
    claimed = job_claim(job_id=dead.id, worker="screenshot")
    job_kill(job_id=dead.id, expected=("PROCESSING",), claim_token=claimed.claim_token,
             actor="worker:screenshot",
             reason="attempts exhausted (5/5); last error: StorageUnavailable: s3 endpoint timed out",
             traceback="Traceback (most recent call last):\n  ...\nStorageUnavailable: timed out")
    celery_process("worker", concurrency=2)
    for job in (failed, counted, hashed, profiled):
        wait_for_state(job.id, {JobState.COMPLETED, JobState.FAILED}, timeout=60)
    wait_for_state(slow.id, JobState.PROCESSING, timeout=60)

    errors: list[str] = []
    too_wide: list[str] = []
    contexts = []

    def new_page(viewport, **options):
        context = chromium.new_context(viewport=viewport, **options)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    def shoot(page, name: str, suffix: str) -> None:
        scroll, width = page_width(page)
        if scroll > width:
            too_wide.append(f"{name}{suffix}: scrollWidth {scroll} > {width}")
        page.screenshot(path=str(out / f"{name}{suffix}.png"), full_page=True)

    for suffix, viewport in SIZES.items():
        page = new_page(viewport)
        page.goto(f"{web_server.url}/login/")
        shoot(page, "login", suffix)

        page = new_page(viewport)
        sign_in(page, web_server.url, "alice")
        page.wait_for_timeout(1500)  # some progress of the running job
        assert page.locator("tr[data-job-id]").count() == 7
        assert page.locator(f"text={LONG_NAME}").is_visible()
        shoot(page, "job-list", suffix)

        page.goto(f"{web_server.url}/upload/")
        shoot(page, "upload", suffix)

        page.goto(f"{web_server.url}/jobs/{slow.id}/")
        page.wait_for_function("() => document.querySelector('[data-eta]').textContent.includes('left')",
                               timeout=20_000)
        shoot(page, "job-processing", suffix)

        page.goto(f"{web_server.url}/jobs/{profiled.id}/")
        assert page.locator("#job-body").get_attribute("data-state") == JobState.COMPLETED
        shoot(page, "job-completed", suffix)

        page.goto(f"{web_server.url}/jobs/{counted.id}/")
        shoot(page, "job-long-name", suffix)

        page.goto(f"{web_server.url}/jobs/{failed.id}/")
        assert page.locator("[data-error]").is_visible()
        assert page.locator("[data-no-retry]").is_visible()  # a bad input: no Retry, and why
        assert page.locator("form[action$='/retry']").count() == 0
        shoot(page, "job-failed", suffix)

        staff = new_page(viewport)
        sign_in(staff, web_server.url, "operator")
        staff.goto(f"{web_server.url}/dead-letters/")
        assert "flaky-source.csv" in staff.content()
        shoot(staff, "dead-letters", suffix)

        staff.goto(f"{web_server.url}/ops/")
        assert staff.locator("[data-worker]").count() >= 1
        charts = staff.locator("svg[data-chart]")
        assert charts.count() == 2
        for i in range(2):
            assert charts.nth(i).locator("path").count() >= 1, "a drawn line"
            assert charts.nth(i).locator("circle[data-point]").count() >= 1, "points with data"
        shoot(staff, "dashboard", suffix)

        staff.goto(f"{web_server.url}/ops/bulk/?action=replay_dead&reason=StorageUnavailable")
        assert staff.locator("[data-eligible]").inner_text() == "1"
        shoot(staff, "bulk-confirm", suffix)

        staff.goto(f"{web_server.url}/admin/jobs/job/")
        shoot(staff, "admin-jobs", suffix)
        staff.goto(f"{web_server.url}/admin/jobs/deadletter/")
        shoot(staff, "admin-dead-letters", suffix)

        # Without JavaScript the upload form still works (every type's options show).
        no_js = new_page(viewport, java_script_enabled=False)
        sign_in(no_js, web_server.url, "alice")
        no_js.goto(f"{web_server.url}/upload/")
        shoot(no_js, "upload-without-javascript", suffix)

    # Don't leave the worker busy for the others; on a slow machine it may be done already.
    slow.refresh_from_db()
    if slow.state == JobState.PROCESSING:
        job_cancel(job=slow, actor="test")
    for context in contexts:
        context.close()
    assert too_wide == [], "\n".join(too_wide)
    assert errors == []
