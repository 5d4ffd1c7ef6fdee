"""The server-rendered pages: who sees what, filters and pages, actions, downloads."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, JobState
from tests.factories import CSV

pytestmark = pytest.mark.django_db


# --- sign-in -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/upload/", f"/jobs/{uuid.uuid4()}/", "/dead-letters/"])
def test_pages_send_an_anonymous_visitor_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_signing_in_leads_to_the_job_list_and_signing_out_back_to_sign_in(client, user):
    page = client.get("/login/")
    assert page.status_code == 200 and b"Sign in" in page.content

    response = client.post("/login/", {"username": "alice", "password": "pw-for-tests-123"})
    assert response.status_code == 302 and response["Location"] == reverse("job-list")
    assert b"alice" in client.get("/").content

    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert client.get("/").status_code == 302


def test_a_wrong_password_is_refused_with_a_message(client, user):
    response = client.post("/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert b"enter a correct username and password" in response.content


def test_sign_out_by_get_is_not_allowed(signed_in):
    assert signed_in.get("/logout/").status_code == 405


# --- job list ------------------------------------------------------------------------------

def test_the_job_list_shows_only_the_users_own_jobs(signed_in, user, other_user, make_job):
    mine = make_job(user, name="mine.csv")
    theirs = make_job(other_user, name="theirs.csv")
    content = signed_in.get("/").content.decode()
    assert str(mine.id) in content and "mine.csv" in content
    assert str(theirs.id) not in content and "theirs.csv" not in content


def test_the_job_list_filters_by_state_and_by_type(signed_in, user, make_job):
    queued = make_job(user, "QUEUED", name="queued.csv")
    cancelled = make_job(user, "CANCELLED", name="cancelled.csv")
    sha = make_job(user, "QUEUED", name="hash.bin", job_type="SHA256")

    by_state = signed_in.get("/", {"state": "CANCELLED"}).content.decode()
    assert str(cancelled.id) in by_state and str(queued.id) not in by_state

    by_type = signed_in.get("/", {"type": "SHA256"}).content.decode()
    assert str(sha.id) in by_type and str(queued.id) not in by_type

    both = signed_in.get("/", {"type": "CSV_ROW_COUNT", "state": "QUEUED"}).content.decode()
    assert str(queued.id) in both and str(sha.id) not in both and str(cancelled.id) not in both


def test_an_unknown_state_filter_is_a_400_that_says_which_states_exist(signed_in):
    response = signed_in.get("/", {"state": "EXPLODED"})
    assert response.status_code == 400
    assert "unknown state &#x27;EXPLODED&#x27;; one of CREATED" in response.content.decode()


def test_hostile_filter_values_are_escaped_not_rendered(signed_in):
    response = signed_in.get("/", {"type": '<script>alert(1)</script>"'})
    assert response.status_code == 200
    assert b"<script>alert(1)" not in response.content


def test_the_job_list_is_paginated_25_a_page_newest_first(signed_in, user, make_job):
    jobs = [make_job(user, "CREATED", name=f"f{i:02}.csv") for i in range(27)]
    first = signed_in.get("/").content.decode()
    second = signed_in.get("/", {"page": 2}).content.decode()
    assert len(re.findall(r'<tr data-job-id=', first)) == 25
    assert len(re.findall(r'<tr data-job-id=', second)) == 2
    assert str(jobs[-1].id) in first and str(jobs[0].id) in second
    assert "Page 2 of 2" in second


@pytest.mark.parametrize("page", ["999999", "-1", "abc", "1e9", "%00"])
def test_a_page_number_out_of_range_or_malformed_shows_a_valid_page(signed_in, user, make_job, page):
    make_job(user, "CREATED", name="people.csv")
    response = signed_in.get("/", {"page": page})
    assert response.status_code == 200
    assert b"people.csv" in response.content


def test_the_list_fragment_is_just_the_table_for_live_refreshes(signed_in, user, make_job):
    job = make_job(user)
    fragment = signed_in.get("/", {"fragment": 1}).content.decode()
    assert fragment.lstrip().startswith('<div id="job-table"')
    assert str(job.id) in fragment and "<html" not in fragment


def test_a_new_user_sees_how_to_start(signed_in):
    assert b"You have no jobs yet" in signed_in.get("/").content


# --- job detail ------------------------------------------------------------------------------

# Committed rows: the in-process runner's heartbeat thread must see the job on its own connection.
@pytest.mark.django_db(transaction=True)
def test_the_job_page_shows_state_attempts_timeline_result_and_download(signed_in, user, make_job):
    job = make_job(user, "COMPLETED")
    content = signed_in.get(f"/jobs/{job.id}/").content.decode()
    assert 'data-state="COMPLETED"' in content
    assert "1 of 5" in content  # attempts
    for state in ("CREATED", "QUEUED", "PROCESSING", "COMPLETED"):
        assert f'class="badge state-{state}"' in content
    assert "&quot;rows&quot;: 3" in content  # the JSON result, pretty-printed
    assert f'href="/jobs/{job.id}/download"' in content


def test_a_job_without_progress_for_the_stall_time_has_a_stalled_badge_on_its_page_and_in_the_list(
        signed_in, user, make_job, settings):
    settings.JOB_STALL_SECONDS = 30
    stalled, fresh = make_job(user, "PROCESSING"), make_job(user, "PROCESSING")
    Job.objects.filter(pk=stalled.pk).update(updated_at=timezone.now() - timedelta(seconds=31))

    assert "data-stalled-badge" in signed_in.get(f"/jobs/{stalled.id}/").content.decode()
    assert "data-stalled-badge" not in signed_in.get(f"/jobs/{fresh.id}/").content.decode()
    badged = {m.group(1) for m in re.finditer(r'<tr data-job-id="([^"]+)"(?:(?!</tr>).)*data-stalled-badge',
                                               signed_in.get("/").content.decode(), re.S)}
    assert badged == {str(stalled.id)}


def test_a_job_failed_by_its_input_shows_the_error_and_why_there_is_no_retry(signed_in, user, make_job):
    job = make_job(user, "FAILED", data=b"a,b\n\xff\xfe,1\n", run=True)
    content = signed_in.get(f"/jobs/{job.id}/").content.decode()
    assert job.error_message and job.error_message[:40] in content.replace("&#x27;", "'")
    assert f'action="/jobs/{job.id}/retry"' not in content
    assert "No Retry: the input cannot be processed as it is" in content
    assert "Cancel job" not in content


def test_a_dead_job_page_offers_a_retry(signed_in, user, make_job):
    job = make_job(user, "DEAD")
    content = signed_in.get(f"/jobs/{job.id}/").content.decode()
    assert f'action="/jobs/{job.id}/retry"' in content


def test_another_users_job_page_is_a_404(client, other_user, user, make_job):
    job = make_job(user)
    client.force_login(other_user)
    assert client.get(f"/jobs/{job.id}/").status_code == 404
    assert client.get(f"/jobs/{job.id}/?fragment=1").status_code == 404


@pytest.mark.parametrize("path", ["/jobs/not-a-uuid/", "/jobs/00000000-0000-0000-0000-000000000000/",
                                  "/jobs/%27%3Bdrop/", "/jobs/" + "a" * 5000 + "/"])
def test_a_malformed_or_unknown_job_id_is_a_404(signed_in, path):
    assert signed_in.get(path).status_code == 404


# --- cancel and retry ------------------------------------------------------------------------

def test_cancelling_a_queued_job_cancels_it(signed_in, user, make_job):
    job = make_job(user, "QUEUED")
    response = signed_in.post(f"/jobs/{job.id}/cancel", follow=True)
    assert response.status_code == 200 and b"Job cancelled." in response.content
    assert Job.objects.get(pk=job.pk).state == JobState.CANCELLED


def test_cancelling_a_finished_job_says_why_and_changes_nothing(signed_in, user, make_job):
    job = make_job(user, "COMPLETED")
    response = signed_in.post(f"/jobs/{job.id}/cancel", follow=True)
    assert b"a COMPLETED job cannot be cancelled" in response.content
    assert Job.objects.get(pk=job.pk).state == JobState.COMPLETED


def test_cancel_and_retry_need_a_post(signed_in, user, make_job):
    job = make_job(user, "QUEUED")
    assert signed_in.get(f"/jobs/{job.id}/cancel").status_code == 405
    assert signed_in.get(f"/jobs/{job.id}/retry").status_code == 405
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED


def test_another_user_cannot_cancel_or_retry_a_job(client, user, other_user, make_job):
    queued, failed = make_job(user, "QUEUED"), make_job(user, "FAILED", data=b"\xff\xfe\x00", run=True)
    client.force_login(other_user)
    assert client.post(f"/jobs/{queued.id}/cancel").status_code == 404
    assert client.post(f"/jobs/{failed.id}/retry").status_code == 404
    assert Job.objects.get(pk=queued.pk).state == JobState.QUEUED
    assert Job.objects.get(pk=failed.pk).state == JobState.FAILED


def test_retrying_a_dead_job_queues_it_again(signed_in, user, make_job):
    job = make_job(user, "DEAD")
    response = signed_in.post(f"/jobs/{job.id}/retry", follow=True)
    assert b"Job queued again." in response.content
    job.refresh_from_db()
    assert (job.state, job.attempts, job.error_message) == (JobState.QUEUED, 0, "")


def test_retrying_a_job_failed_by_its_input_is_refused_with_the_reason(signed_in, user, make_job):
    job = make_job(user, "FAILED", data=b"\xff\xfe\x00", run=True)
    response = signed_in.post(f"/jobs/{job.id}/retry", follow=True)
    assert b"retrying cannot help: the input cannot be processed as it is" in response.content
    assert Job.objects.get(pk=job.pk).state == JobState.FAILED


def test_retrying_a_completed_job_is_refused_with_a_message(signed_in, user, make_job):
    job = make_job(user, "COMPLETED")
    response = signed_in.post(f"/jobs/{job.id}/retry", follow=True)
    assert b"only FAILED or DEAD jobs can be retried; this one is COMPLETED" in response.content


def test_a_post_without_the_csrf_token_is_refused(client, user, make_job):
    job = make_job(user, "QUEUED")
    client.handler.enforce_csrf_checks = True
    client.force_login(user)
    assert client.post(f"/jobs/{job.id}/cancel").status_code == 403
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED


# --- downloads -------------------------------------------------------------------------------

def test_the_download_link_redirects_to_the_result_bytes(signed_in, user, make_job):
    job = make_job(user, "COMPLETED")
    response = signed_in.get(f"/jobs/{job.id}/download")
    assert response.status_code == 302
    fetched = httpx.get(response["Location"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.json()["result"]["rows"] == 3
    assert "input.result.json" in fetched.headers["content-disposition"]


def test_the_input_can_be_downloaded_too(signed_in, user, make_job):
    job = make_job(user, "COMPLETED")
    response = signed_in.get(f"/jobs/{job.id}/download", {"which": "input"})
    assert httpx.get(response["Location"], timeout=10).content == CSV


def test_downloading_another_users_result_is_a_404(client, user, other_user, make_job):
    job = make_job(user, "COMPLETED")
    client.force_login(other_user)
    assert client.get(f"/jobs/{job.id}/download").status_code == 404
    assert client.get(f"/jobs/{job.id}/download", {"which": "input"}).status_code == 404


def test_a_result_that_does_not_exist_yet_is_a_409_that_says_so(signed_in, user, make_job):
    job = make_job(user, "QUEUED")
    response = signed_in.get(f"/jobs/{job.id}/download")
    assert response.status_code == 409
    assert b"the job is QUEUED; results exist once it is COMPLETED" in response.content


@pytest.mark.parametrize("name", ["nope.json", "../../etc/passwd", "x" * 3000])
def test_an_unknown_output_name_is_a_404(signed_in, user, make_job, name):
    job = make_job(user, "COMPLETED")
    assert signed_in.get(f"/jobs/{job.id}/download", {"output": name}).status_code == 404


# --- dead letters ----------------------------------------------------------------------------

def test_staff_see_dead_letters_with_reason_attempts_and_a_replay_button(client, staff_user, user, make_job):
    job = make_job(user, "DEAD")
    client.force_login(staff_user)
    content = client.get("/dead-letters/").content.decode()
    assert "attempts exhausted" in content
    assert f'action="/dead-letters/{job.dead_letter.pk}/replay"' in content


def test_the_dead_letter_page_does_not_exist_for_other_users(signed_in, user, make_job):
    job = make_job(user, "DEAD")
    assert signed_in.get("/dead-letters/").status_code == 404
    assert signed_in.post(f"/dead-letters/{job.dead_letter.pk}/replay").status_code == 404
    assert Job.objects.get(pk=job.pk).state == JobState.DEAD


def test_staff_replay_queues_a_dead_job_and_a_second_replay_says_it_is_not_dead(client, staff_user, user, make_job):
    job = make_job(user, "DEAD")
    client.force_login(staff_user)
    first = client.post(f"/dead-letters/{job.dead_letter.pk}/replay", follow=True)
    assert f"Job {job.id} queued again.".encode() in first.content
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED
    second = client.post(f"/dead-letters/{job.dead_letter.pk}/replay", follow=True)
    assert b"job is QUEUED, not DEAD; nothing to replay" in second.content


def test_replaying_an_unknown_dead_letter_is_a_404(client, staff_user):
    client.force_login(staff_user)
    assert client.post("/dead-letters/999999/replay").status_code == 404
