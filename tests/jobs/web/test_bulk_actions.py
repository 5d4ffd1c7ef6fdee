"""The dashboard's bulk actions: each shows what it would do, does it only once confirmed, moves
exactly the jobs its filter names (through the single action's service), and leaves an audit
trail: a JobEvent per job with the staff user as actor, and an admin LogEntry per job."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from jobs.models import Job, JobEvent, JobState
from jobs.services.execution import job_after_transient_error, job_claim, job_fail, job_kill
from storage import StorageUnavailable

pytestmark = pytest.mark.django_db
S = JobState


@pytest.fixture
def operator(client, make_user):
    staff = make_user("operator", staff=True)
    client.force_login(staff)
    return staff


def dead(job: Job, reason: str) -> Job:
    claimed = job_claim(job_id=job.id, worker="test-worker")
    return job_kill(job_id=job.id, expected=S.PROCESSING, claim_token=claimed.claim_token, reason=reason,
                    actor="worker:test")


def failed(job: Job, code: str) -> Job:
    return job_fail(job=job_claim(job_id=job.id, worker="test-worker"), code=code, message=f"failed: {code}",
                    actor="worker:test")


def states(*jobs: Job) -> list[str]:
    return [Job.objects.get(pk=j.pk).state for j in jobs]


def test_replaying_dead_letters_by_reason_and_type_queues_only_those(client, operator, user, make_job):
    outage = [dead(make_job(user, "QUEUED"), "attempts exhausted; last error: StorageUnavailable: timed out")
              for _ in range(2)]
    other_reason = dead(make_job(user, "QUEUED"), "the job kept killing its worker")
    other_type = dead(make_job(user, "QUEUED", job_type="SHA256"), "last error: StorageUnavailable: timed out")
    query = {"action": "replay_dead", "job_type": "CSV_ROW_COUNT", "reason": "storageunavailable"}

    preview = client.get("/ops/bulk/", query)
    assert preview.status_code == 200
    assert b'data-eligible>2<' in preview.content and b"Confirm" in preview.content
    assert states(*outage, other_reason, other_type) == [S.DEAD] * 4  # a preview changes nothing

    done = client.post("/ops/bulk/", {**query, "confirm": "yes"}, follow=True)
    assert b"2 moved" in done.content
    assert states(*outage, other_reason, other_type) == [S.QUEUED, S.QUEUED, S.DEAD, S.DEAD]
    assert all(Job.objects.get(pk=j.pk).dead_letter.replay_count == 1 for j in outage)


def test_retrying_the_failed_jobs_of_a_type_skips_those_a_retry_cannot_cure(client, operator, user, make_job):
    storage_refused = failed(make_job(user, "QUEUED"), "storage_access_denied")
    bad_input = failed(make_job(user, "QUEUED"), "malformed_csv")
    other_type = failed(make_job(user, "QUEUED", job_type="SHA256"), "storage_access_denied")
    query = {"action": "retry_failed", "job_type": "CSV_ROW_COUNT"}

    preview = client.get("/ops/bulk/", query).content.decode()
    assert "data-eligible>1<" in preview and "2 match" in preview

    client.post("/ops/bulk/", {**query, "confirm": "yes"})
    assert states(storage_refused, bad_input, other_type) == [S.QUEUED, S.FAILED, S.FAILED]


def test_cancelling_a_users_waiting_jobs_leaves_running_jobs_and_other_users_alone(client, operator, user, other_user,
                                                                                   make_job):
    queued, created = make_job(user, "QUEUED"), make_job(user, "CREATED")
    claimed = job_claim(job_id=make_job(user, "QUEUED").id, worker="test-worker")
    retrying, _ = job_after_transient_error(job=claimed, error=StorageUnavailable("down"), traceback="",
                                            actor="worker:test")
    running = make_job(user, "PROCESSING")
    theirs = make_job(other_user, "QUEUED")

    client.post("/ops/bulk/", {"action": "cancel_waiting", "username": user.username, "confirm": "yes"})
    assert states(queued, created, retrying, running, theirs) == [S.CANCELLED] * 3 + [S.PROCESSING, S.QUEUED]


def test_every_moved_job_has_an_event_by_the_staff_user_and_an_admin_log_entry(client, operator, user, make_job):
    jobs = [make_job(user, "QUEUED") for _ in range(3)]
    client.post("/ops/bulk/", {"action": "cancel_waiting", "username": user.username, "confirm": "yes"})

    for job in jobs:
        event = JobEvent.objects.filter(job=job).latest("id")
        assert (event.to_state, event.actor) == (S.CANCELLED, "staff:operator")
    entries = LogEntry.objects.filter(user=operator)
    assert sorted(e.object_id for e in entries) == sorted(str(j.id) for j in jobs)
    assert all("bulk: cancel every waiting" in e.change_message for e in entries)


def test_a_post_without_the_confirmation_only_shows_the_preview(client, operator, user, make_job):
    job = make_job(user, "QUEUED")
    response = client.post("/ops/bulk/", {"action": "cancel_waiting", "username": user.username})
    assert response.status_code == 400 and b"Confirm" in response.content
    assert states(job) == [S.QUEUED]


@pytest.mark.parametrize(("query", "message"), [
    ({"action": "explode"}, "unknown bulk action"),
    ({"action": "retry_failed"}, "choose the job type"),
    ({"action": "retry_failed", "job_type": "NOPE"}, "unknown job type"),
    ({"action": "cancel_waiting"}, "name the user"),
    ({"action": "cancel_waiting", "username": "nobody-here"}, "no user named"),
    ({"action": "replay_dead", "reason": "x" * 201}, "at most 200 characters"),
    ({"action": "replay_dead", "reason": "a\x00b"}, "cannot contain NUL"),
    ({"action": "cancel_waiting", "username": "\x00"}, "cannot contain NUL"),
])
def test_a_bad_filter_is_a_400_that_says_what_is_wrong(client, operator, query, message):
    for response in (client.get("/ops/bulk/", query), client.post("/ops/bulk/", {**query, "confirm": "yes"})):
        assert response.status_code == 400
        assert message in response.content.decode().replace("&#x27;", "'")


def test_bulk_actions_are_refused_to_a_user_who_is_not_staff(signed_in, user, make_job):
    job = make_job(user, "QUEUED")
    query = {"action": "cancel_waiting", "username": user.username, "confirm": "yes"}
    assert signed_in.get("/ops/bulk/", query).status_code == 403
    assert signed_in.post("/ops/bulk/", query).status_code == 403
    assert states(job) == [S.QUEUED]
