"""The state machine: every allowed move happens, every other is refused, races have one winner."""

import copy
import threading
import uuid
from itertools import product

import pytest
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from jobs.errors import JobError, TransitionRefused
from jobs.models import DeadLetter, Job, JobEvent, JobState
from jobs.services.actions import dead_letter_replay, job_cancel
from jobs.services.execution import (
    job_after_transient_error,
    job_cancelled_by_worker,
    job_claim,
    job_complete,
    job_fail,
    job_kill,
    job_record_progress,
    retry_delay,
)
from jobs.state_machine import ALLOWED, job_transition
from tests.factories import JobFactory

S = JobState
ALL_PAIRS = list(product(S.values, S.values))
ALLOWED_PAIRS = [p for p in ALL_PAIRS if p[1] in ALLOWED[p[0]]]
REFUSED_PAIRS = [p for p in ALL_PAIRS if p[1] not in ALLOWED[p[0]]]


def row(job: Job) -> dict:
    """Every column of the job as stored."""
    return Job.objects.filter(pk=job.pk).values().get()


def backoff_over(job: Job) -> None:
    """The RETRYING job's backoff runs out now (as if its time had passed)."""
    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())


@pytest.mark.django_db
@pytest.mark.parametrize(("from_state", "to_state"), ALLOWED_PAIRS)
def test_an_allowed_move_changes_the_state_and_writes_one_event(user, from_state, to_state):
    job = JobFactory(owner=user, state=from_state)

    moved = job_transition(job_id=job.id, to=to_state, expected=from_state, reason="test", actor="tester")

    stored = Job.objects.get(pk=job.pk)
    assert moved.state == stored.state == to_state
    assert stored.version == job.version + 1
    event = JobEvent.objects.get(job=job)
    assert (event.from_state, event.to_state, event.reason, event.actor) == (from_state, to_state, "test", "tester")
    assert event.attempt == stored.attempts
    if stored.is_terminal:
        assert stored.finished_at is not None and stored.claim_token is None and stored.lease_expires_at is None


@pytest.mark.django_db
@pytest.mark.parametrize(("from_state", "to_state"), REFUSED_PAIRS)
def test_a_move_outside_the_table_is_refused_and_changes_nothing(user, from_state, to_state):
    job = JobFactory(owner=user, state=from_state)
    before = row(job)

    with pytest.raises(TransitionRefused, match=f"cannot move from {from_state} to {to_state}"):
        job_transition(job_id=job.id, to=to_state, reason="test", actor="tester")

    assert row(job) == before
    assert not JobEvent.objects.filter(job=job).exists()


def states_reachable_from(owner, from_state: str) -> set[str]:
    """The states job_transition moves a job in `from_state` to, trying every one."""
    reached = set()
    for to_state in S.values:
        job = JobFactory(owner=owner, state=from_state)
        try:
            job_transition(job_id=job.id, to=to_state, expected=from_state)
        except TransitionRefused:
            continue
        reached.add(Job.objects.get(pk=job.pk).state)
    return reached


@pytest.mark.django_db
@pytest.mark.parametrize(("from_state", "ways_out"), [(S.COMPLETED, set()), (S.CANCELLED, set()),
                                                      (S.FAILED, {S.QUEUED}), (S.DEAD, {S.QUEUED})])
def test_a_finished_job_moves_only_back_to_queued_by_replay_or_operator_retry(user, from_state, ways_out):
    assert states_reachable_from(user, from_state) == ways_out


@pytest.mark.django_db
def test_a_stale_expectation_is_refused_and_changes_nothing(user):
    job = JobFactory(owner=user, state=S.QUEUED)
    job_transition(job_id=job.id, to=S.CANCELLED, expected=S.QUEUED)
    before = row(job)

    with pytest.raises(TransitionRefused, match="is CANCELLED, expected QUEUED"):
        job_transition(job_id=job.id, to=S.PROCESSING, expected=S.QUEUED)
    assert row(job) == before


@pytest.mark.django_db
def test_the_move_and_its_event_commit_or_roll_back_together(user):
    job = JobFactory(owner=user, state=S.CREATED)

    with pytest.raises(RuntimeError), transaction.atomic():
        job_transition(job_id=job.id, to=S.QUEUED, expected=S.CREATED)
        raise RuntimeError("the caller's transaction fails after the move")

    assert Job.objects.get(pk=job.pk).state == S.CREATED
    assert not JobEvent.objects.filter(job=job).exists()


@pytest.mark.django_db
def test_a_stale_copy_of_the_row_is_judged_again_on_the_row_as_it_is(user):
    job = JobFactory(owner=user, state=S.QUEUED)
    stale = copy.copy(job)
    job_cancel(job=job, actor="user")

    with pytest.raises(TransitionRefused, match="is CANCELLED, expected QUEUED"):
        job_transition(job_id=job.id, to=S.PROCESSING, expected=S.QUEUED, current=stale)

    assert Job.objects.get(pk=job.pk).state == S.CANCELLED
    assert list(JobEvent.objects.filter(job=job).values_list("to_state", flat=True)) == [S.CANCELLED]


@pytest.mark.django_db
def test_a_stale_copy_of_a_row_that_may_still_move_moves_it_once(user):
    claimed = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED).id, worker="w1")
    job_cancel(job=claimed, actor="user")  # flags the running job: a new version of the row

    done = job_complete(job=claimed, result={"rows": 1}, result_keys=["k"], actor="worker:w1")

    stored = Job.objects.get(pk=claimed.pk)
    assert done.state == stored.state == S.COMPLETED and stored.result == {"rows": 1}
    assert stored.events.filter(to_state=S.COMPLETED).count() == 1
    assert claimed.state == S.PROCESSING  # the caller's copy is not modified


@pytest.mark.django_db
def test_a_claim_takes_a_queued_or_retrying_job_with_a_fresh_token_and_lease(user):
    job = JobFactory(owner=user, state=S.QUEUED)
    first = job_claim(job_id=job.id, worker="w0")
    job_after_transient_error(job=first, error=OSError("blink"), traceback="", actor="worker:w0")
    backoff_over(job)

    claimed = job_claim(job_id=job.id, worker="w1")

    stored = Job.objects.get(pk=job.pk)
    assert row(job) == {f.attname: getattr(claimed, f.attname) for f in Job._meta.concrete_fields}
    assert (stored.state, stored.attempts, stored.worker) == (S.PROCESSING, 2, "w1")
    assert stored.claim_token not in (None, first.claim_token) and stored.lease_expires_at > stored.started_at
    event = stored.events.order_by("-id").first()
    assert (event.from_state, event.to_state, event.attempt, event.actor) == (S.RETRYING, S.PROCESSING, 2, "worker:w1")


@pytest.mark.django_db
@pytest.mark.parametrize("state", [S.CREATED, S.PROCESSING, S.COMPLETED, S.FAILED, S.CANCELLED, S.DEAD])
def test_a_job_that_is_not_waiting_cannot_be_claimed(user, state):
    job = JobFactory(owner=user, state=state)
    before = row(job)

    assert job_claim(job_id=job.id, worker="w1") is None
    assert row(job) == before and not job.events.exists()


@pytest.mark.django_db
def test_a_job_that_does_not_exist_cannot_be_claimed():
    assert job_claim(job_id=uuid.uuid4(), worker="w1") is None


@pytest.mark.django_db(transaction=True)
def test_when_workers_race_to_claim_one_job_exactly_one_wins(user):
    jobs = [JobFactory(owner=user, state=S.QUEUED) for _ in range(10)]
    for job in jobs:
        barrier = threading.Barrier(8)
        winners: list = []

        def claim(n: int, job=job, barrier=barrier, winners=winners) -> None:
            barrier.wait()
            try:
                if job_claim(job_id=job.id, worker=f"w{n}") is not None:
                    winners.append(n)
            finally:
                connection.close()

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        job.refresh_from_db()
        assert len(winners) == 1
        assert job.state == S.PROCESSING
        assert job.worker == f"w{winners[0]}"
        assert job.attempts == 1
        assert job.events.filter(to_state=S.PROCESSING).count() == 1


def _stale_and_current(user) -> tuple[Job, Job]:
    """A job claimed by w1, whose lease the sweeper took back, then claimed by w2."""
    job = JobFactory(owner=user, state=S.QUEUED)
    stale = job_claim(job_id=job.id, worker="w1")
    job_transition(job_id=job.id, to=S.QUEUED, expected=S.PROCESSING, reason="lease expired",
                   changes={"claim_token": None})
    return stale, job_claim(job_id=job.id, worker="w2")


STALE_WORKER_MOVES = {
    "complete": lambda job: job_complete(job=job, result={"rows": 9}, result_keys=[], actor="worker:w1"),
    "fail": lambda job: job_fail(job=job, code="bad_input", message="stale", actor="worker:w1"),
    "retry": lambda job: job_after_transient_error(job=job, error=OSError("x"), traceback="", actor="worker:w1"),
    "cancel": lambda job: job_cancelled_by_worker(job=job, actor="worker:w1"),
    "kill": lambda job: job_kill(job_id=job.id, expected=S.PROCESSING, claim_token=job.claim_token,
                                 reason="exhausted", actor="worker:w1"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("move", STALE_WORKER_MOVES)
def test_a_worker_whose_claim_was_replaced_changes_nothing(user, move):
    stale, current = _stale_and_current(user)
    before = row(current)

    with pytest.raises(TransitionRefused, match="no longer held by this worker"):
        STALE_WORKER_MOVES[move](stale)

    assert row(current) == before
    assert not DeadLetter.objects.filter(job_id=current.pk).exists()
    # Nor can it write progress; it is told to stop.
    assert job_record_progress(job=stale, bytes_read=5) is True
    assert row(current) == before

    job_complete(job=current, result={"rows": 2}, result_keys=[], actor="worker:w2")
    stored = Job.objects.get(pk=current.pk)
    assert (stored.state, stored.result, stored.attempts) == (S.COMPLETED, {"rows": 2}, 2)


@pytest.mark.django_db
def test_a_duplicate_message_cannot_complete_a_job_twice(user):
    job = JobFactory(owner=user, state=S.QUEUED)
    claimed = job_claim(job_id=job.id, worker="w1")
    job_complete(job=claimed, result={"rows": 1}, result_keys=[], actor="worker:w1")

    assert job_claim(job_id=job.id, worker="w2") is None
    with pytest.raises(TransitionRefused):
        job_complete(job=claimed, result={"rows": 9}, result_keys=[], actor="worker:w1")
    job.refresh_from_db()
    assert job.result == {"rows": 1}
    assert job.events.filter(to_state=S.COMPLETED).count() == 1


@pytest.mark.django_db
def test_a_late_message_cannot_move_a_finished_job_backwards(user):
    job = JobFactory(owner=user, state=S.COMPLETED)
    before = row(job)

    assert job_claim(job_id=job.id, worker="late") is None
    for to in (S.QUEUED, S.PROCESSING, S.RETRYING):
        with pytest.raises(TransitionRefused):
            job_transition(job_id=job.id, to=to)
    assert row(job) == before and not job.events.exists()


@pytest.mark.django_db(transaction=True)
def test_replaying_a_dead_letter_twice_queues_the_job_once(user):
    job = JobFactory(owner=user, state=S.PROCESSING)
    job_kill(job_id=job.id, expected=S.PROCESSING, reason="attempts exhausted", actor="test")
    letter = DeadLetter.objects.get(job=job)

    dead_letter_replay(dead_letter=letter, actor="staff:1")
    with pytest.raises(JobError, match="not DEAD"):
        dead_letter_replay(dead_letter=letter, actor="staff:1")

    job.refresh_from_db()
    letter.refresh_from_db()
    assert job.state == S.QUEUED and job.attempts == 0
    assert letter.replay_count == 1
    assert job.events.filter(to_state=S.QUEUED).count() == 1


@pytest.mark.django_db
def test_cancelling_a_queued_job_is_immediate_and_a_running_one_is_flagged(user):
    queued = JobFactory(owner=user, state=S.QUEUED)
    running = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED).id, worker="w1")

    assert job_cancel(job=queued, actor="user").state == S.CANCELLED
    assert job_cancel(job=running, actor="user").state == S.PROCESSING
    assert Job.objects.get(pk=running.pk).cancel_requested is True
    # The worker learns it at its next progress write, and ends the job CANCELLED.
    assert job_record_progress(job=running, bytes_read=5) is True
    assert job_cancelled_by_worker(job=running, actor="worker:w1").state == S.CANCELLED

    completed = JobFactory(owner=user, state=S.COMPLETED)
    with pytest.raises(JobError, match="a COMPLETED job cannot be cancelled"):
        job_cancel(job=completed, actor="user")


def test_retry_backoff_grows_exponentially_with_jitter_and_a_cap(settings):
    settings.JOB_RETRY_BACKOFF_BASE = 1
    settings.JOB_RETRY_BACKOFF_MAX = 10
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (12, 10)]:
        delays = [retry_delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


@pytest.mark.django_db
def test_a_transient_error_retries_with_a_backoff_until_attempts_run_out(user):
    job = JobFactory(owner=user, state=S.QUEUED, max_attempts=2)

    retrying, delay = job_after_transient_error(job=job_claim(job_id=job.id, worker="w1"), error=OSError("blink"),
                                                traceback="tb", actor="worker:w1")
    assert retrying.state == S.RETRYING and delay > 0 and retrying.next_attempt_at is not None
    backoff_over(job)
    dead, delay = job_after_transient_error(job=job_claim(job_id=job.id, worker="w1"), error=OSError("again"),
                                            traceback="tb", actor="worker:w1")

    assert dead.state == S.DEAD and delay is None
    letter = DeadLetter.objects.get(job=job)
    assert "attempts exhausted (2/2)" in letter.reason and letter.attempts == 2


@pytest.mark.django_db
def test_a_move_whose_conditions_the_row_fails_is_refused_and_changes_nothing(user):
    job = JobFactory(owner=user, state=S.PROCESSING)  # its lease runs for minutes yet
    before = row(job)

    with pytest.raises(TransitionRefused, match="no longer meets the conditions"):
        job_transition(job_id=job.id, to=S.QUEUED, expected=S.PROCESSING, current=job,
                       where=Q(lease_expires_at__lt=timezone.now()))

    assert row(job) == before and not job.events.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("move", [m for m in STALE_WORKER_MOVES if m != "kill"])  # job_kill is the sweeper's too
@pytest.mark.parametrize("max_attempts", [1, 5])  # a transient error on the last attempt kills
def test_a_worker_side_move_without_a_claim_is_refused(user, move, max_attempts):
    job = JobFactory(owner=user, state=S.PROCESSING, max_attempts=max_attempts)
    before = row(job)
    unclaimed = copy.copy(job)
    unclaimed.claim_token = None

    with pytest.raises(TransitionRefused, match="held by this worker"):
        STALE_WORKER_MOVES[move](unclaimed)

    assert row(job) == before and not job.events.exists()
