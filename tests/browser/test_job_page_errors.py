"""The job page in a real browser as a job retries: the transient error shows as a warning while
it waits, goes away as soon as the next attempt starts (no reload), and a permanent failure
then shows in red with no Retry button."""

from __future__ import annotations

import pytest

from jobs.models import JobState
from jobs.services.execution import job_after_transient_error, job_claim, job_fail
from storage import StorageUnavailable
from tests.browser.conftest import sign_in
from tests.factories import CSV, job_in_state

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
pytest.importorskip("playwright.sync_api")


def test_the_error_box_follows_the_attempts_live(chromium, web_server, make_user, upload, settings):
    settings.JOB_RETRY_BACKOFF_BASE = settings.JOB_RETRY_BACKOFF_MAX = 0.001  # the next attempt is due at once
    alice = make_user("alice")
    job = job_in_state(alice, "QUEUED", input_key=upload(alice, CSV, "retried.csv"))
    claimed = job_claim(job_id=job.id, worker="test-worker")
    job_after_transient_error(job=claimed, error=StorageUnavailable("s3 endpoint timed out"), traceback="",
                              actor="worker:test")

    context = chromium.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, web_server.url, "alice")
    page.goto(f"{web_server.url}/jobs/{job.id}/")
    assert page.locator("[data-error-transient]").is_visible()
    assert "msg-error" not in (page.locator("[data-error]").get_attribute("class") or "")
    page.wait_for_timeout(500)  # the socket is open

    again = job_claim(job_id=job.id, worker="test-worker")
    page.wait_for_selector("#job-body[data-state=PROCESSING]", timeout=10_000)
    page.wait_for_selector("[data-error]", state="detached", timeout=10_000)

    job_fail(job=again, code="malformed_csv", message="line 2: unclosed quote", actor="worker:test")
    page.wait_for_selector("[data-error].msg-error", timeout=10_000)
    page.wait_for_selector("[data-no-retry]", timeout=10_000)
    assert page.locator("form[action$='/retry']").count() == 0
    assert page.locator("#job-body").get_attribute("data-state") == JobState.FAILED
    context.close()
    assert errors == []
