"""The operators' admin: job list and timeline, presigned links, actions through the services."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from jobs.models import DeadLetter, Job, JobState

pytestmark = pytest.mark.django_db
JOBS = "/admin/jobs/job/"
LETTERS = "/admin/jobs/deadletter/"


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _act(client, url, action, objects):
    return client.post(url, {"action": action, "_selected_action": [str(o.pk) for o in objects]}, follow=True)


def test_job_changelist_shows_file_owner_type_state_attempts_and_times_to_the_second(admin_client, user, make_job):
    job = make_job(user, JobState.FAILED)
    html = admin_client.get(JOBS).content.decode()
    for heading in ("By state", "By job type", "By retry", "By created at"):
        assert heading in html
    assert "input.csv" in html and user.username in html and "CSV_ROW_COUNT" in html and "FAILED" in html
    assert "1/5" in html  # attempts of max_attempts
    assert job.created_at.strftime("%Y-%m-%d %H:%M:%S") in html


def test_job_changelist_filters_by_state(admin_client, user, make_job):
    created, failed = make_job(user), make_job(user, JobState.FAILED)
    html = admin_client.get(JOBS, {"state__exact": "FAILED"}).content.decode()
    assert str(failed.id) in html and str(created.id) not in html


def test_job_changelist_filters_by_job_type(admin_client, user, make_job):
    csv = make_job(user)
    html = admin_client.get(JOBS, {"job_type": "JSON_CANONICALIZE"}).content.decode()
    assert str(csv.id) not in html
    assert str(csv.id) in admin_client.get(JOBS, {"job_type": "CSV_ROW_COUNT"}).content.decode()


def test_job_changelist_does_not_count_the_whole_table(admin_client, user, make_job):
    make_job(user)
    response = admin_client.get(JOBS)
    assert response.status_code == 200
    assert response.context["cl"].full_result_count is None  # no "of N total", no count(*) of every job
    assert response.context["cl"].result_count == 1  # small results are still counted exactly


def test_job_search_finds_by_id_id_prefix_file_name_and_owner(admin_client, user, other_user, make_job):
    mine, theirs = make_job(user, name="quarterly-report.csv"), make_job(other_user)
    for term in (str(theirs.id), str(theirs.id)[:8], str(theirs.id)[:13], other_user.username):
        html = admin_client.get(JOBS, {"q": term}).content.decode()
        assert str(theirs.id) in html and str(mine.id) not in html, term
    for term in ("quarterly", "REPORT.CSV", "ly-rep"):
        html = admin_client.get(JOBS, {"q": term}).content.decode()
        assert str(mine.id) in html and str(theirs.id) not in html, term


def test_a_search_matching_nothing_or_too_short_is_an_empty_page_not_an_error(admin_client, user, make_job):
    job = make_job(user)
    for term in ("zz", "no-such-file", "0000", "%", "'; drop table"):
        response = admin_client.get(JOBS, {"q": term})
        assert response.status_code == 200 and str(job.id) not in response.content.decode(), term


def test_job_change_page_shows_the_timeline_and_a_presigned_input_link(admin_client, user, make_job):
    job = make_job(user, JobState.FAILED)
    response = admin_client.get(f"{JOBS}{job.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "timeline" in html.lower()
    assert "line 3: broken" in html and "claimed" in html  # event reasons
    assert "X-Amz-Signature" in html and "input.csv" in html
    assert "all 1 task ids" in html and "/admin/django_celery_results/taskresult/" in html
    # View-only: no form field to edit the state.
    assert 'name="state"' not in html


def test_dead_job_change_page_links_its_dead_letter(admin_client, user, make_job):
    job = make_job(user, JobState.DEAD)
    html = admin_client.get(f"{JOBS}{job.pk}/change/").content.decode()
    assert f"/admin/jobs/deadletter/{job.dead_letter.pk}/change/" in html


def test_retry_action_queues_failed_jobs_and_says_why_others_were_refused(admin_client, user, make_job):
    failed, created = make_job(user, JobState.FAILED), make_job(user)
    response = _act(admin_client, JOBS, "retry_jobs", [failed, created])
    assert response.status_code == 200
    msgs = _messages(response)
    assert f"{failed.id}: retried, now QUEUED" in msgs
    assert any(m.startswith(f"{created.id}: not retried:") and "CREATED" in m for m in msgs)
    assert Job.objects.get(pk=failed.pk).state == JobState.QUEUED
    assert Job.objects.get(pk=created.pk).state == JobState.CREATED
    assert Job.objects.get(pk=failed.pk).events.last().actor == "admin:operator"


def test_retry_is_not_done_where_it_cannot_help_and_the_job_page_says_why(admin_client, user, make_job):
    hopeless = make_job(user, JobState.FAILED)
    Job.objects.filter(pk=hopeless.pk).update(error_code="malformed_csv")
    msgs = _messages(_act(admin_client, JOBS, "retry_jobs", [hopeless]))
    assert len(msgs) == 1 and msgs[0].startswith(f"{hopeless.id}: not retried: retrying cannot help")
    assert Job.objects.get(pk=hopeless.pk).state == JobState.FAILED
    page = admin_client.get(f"{JOBS}{hopeless.pk}/change/").content.decode()
    assert "retrying cannot help" in page
    useless = admin_client.get(JOBS, {"retry": "useless"}).content.decode()
    assert str(hopeless.id) in useless
    assert str(hopeless.id) not in admin_client.get(JOBS, {"retry": "helps"}).content.decode()


def test_cancel_action_cancels_queued_flags_running_and_refuses_finished(admin_client, user, make_job):
    queued, running, failed = (make_job(user, JobState.QUEUED), make_job(user, JobState.PROCESSING),
                               make_job(user, JobState.FAILED))
    msgs = _messages(_act(admin_client, JOBS, "cancel_jobs", [queued, running, failed]))
    assert f"{queued.id}: cancelled" in msgs
    assert f"{running.id}: cancel requested; stops at its next chunk" in msgs
    assert f"{failed.id}: not cancelled: a FAILED job cannot be cancelled" in msgs
    assert Job.objects.get(pk=queued.pk).state == JobState.CANCELLED
    assert Job.objects.get(pk=running.pk).cancel_requested is True


def test_replay_action_on_jobs_replays_dead_ones_once(admin_client, user, make_job):
    dead, created = make_job(user, JobState.DEAD), make_job(user)
    msgs = _messages(_act(admin_client, JOBS, "replay_jobs", [dead, created]))
    assert f"{dead.id}: replayed, now QUEUED" in msgs
    assert f"{created.id}: not replayed: it has no dead letter (CREATED)" in msgs
    again = _messages(_act(admin_client, JOBS, "replay_jobs", [dead]))
    assert again == [f"{dead.id}: not replayed: job is QUEUED, not DEAD; nothing to replay"]
    assert DeadLetter.objects.get(job=dead).replay_count == 1


def test_dead_letter_list_and_page_show_reason_and_preformatted_traceback(admin_client, user, make_job):
    job = make_job(user, JobState.DEAD)
    letter = DeadLetter.objects.get(job=job)
    listing = admin_client.get(LETTERS).content.decode()
    assert "attempts exhausted" in listing and str(job.id) in listing
    assert letter.died_at.strftime("%Y-%m-%d %H:%M:%S") in listing
    page = admin_client.get(f"{LETTERS}{letter.pk}/change/").content.decode()
    assert "<pre" in page and "Traceback: boom" in page


def test_dead_letter_bulk_replay_is_idempotent(admin_client, user, make_job):
    letters = [DeadLetter.objects.get(job=make_job(user, JobState.DEAD)) for _ in range(2)]
    msgs = _messages(_act(admin_client, LETTERS, "replay", letters))
    assert sorted(msgs) == sorted(f"{letter.job_id}: replayed, now QUEUED" for letter in letters)
    second = _messages(_act(admin_client, LETTERS, "replay", letters))
    assert all("not replayed" in m for m in second) and len(second) == 2
    assert [DeadLetter.objects.get(pk=x.pk).replay_count for x in letters] == [1, 1]
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.QUEUED}


def test_jobs_events_and_dead_letters_cannot_be_added_edited_or_deleted(admin_client, user, make_job):
    job = make_job(user, JobState.DEAD)
    assert admin_client.get(f"{JOBS}add/").status_code == 403
    assert admin_client.get(f"{LETTERS}add/").status_code == 403
    assert admin_client.get("/admin/jobs/jobevent/").status_code == 404
    response = admin_client.post(f"{JOBS}{job.pk}/change/", {"state": "COMPLETED", "max_attempts": 99})
    assert response.status_code == 403
    assert Job.objects.get(pk=job.pk).state == JobState.DEAD
    assert admin_client.post(f"{JOBS}{job.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Job.objects.filter(pk=job.pk).exists()


def test_a_non_staff_user_is_sent_to_the_admin_login(client, user, make_job):
    job = make_job(user)
    client.force_login(user)
    for url in (JOBS, f"{JOBS}{job.pk}/change/", LETTERS):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    response = client.post(JOBS, {"action": "cancel_jobs", "_selected_action": [str(job.pk)]})
    assert response.status_code == 302
    assert Job.objects.get(pk=job.pk).state == JobState.CREATED


def test_dead_letter_search_by_job_id_prefix_reason_and_owner(admin_client, user, other_user, make_job):
    mine, theirs = make_job(user, JobState.DEAD), make_job(other_user, JobState.DEAD)
    for term in (str(theirs.id)[:8], other_user.username):
        html = admin_client.get(LETTERS, {"q": term}).content.decode()
        assert str(theirs.id) in html and str(mine.id) not in html, term
    both = admin_client.get(LETTERS, {"q": "exhausted"}).content.decode()
    assert str(mine.id) in both and str(theirs.id) in both
    response = admin_client.get(LETTERS, {"job__job_type": "CSV_ROW_COUNT"})
    assert response.status_code == 200 and response.context["cl"].full_result_count is None
