"""The state machine: every allowed move happens, every other is refused, races have one winner."""

import copy
import threading
import uuid
from itertools import product

import pytest
from django.db import IntegrityError, connection

from jobs import services, state_machine
from jobs.models import DeadLetter, Job, JobEvent, JobState
from jobs.state_machine import ALLOWED, TransitionRefused, job_transition

S = JobState
ALL_PAIRS = list(product(S.values, S.values))


def make_job(owner, state: str) -> Job:
    return Job.objects.create(owner=owner, job_type="CSV_ROW_COUNT", input_bucket="job-inputs",
                              input_key=f"uploads/{owner.pk}/{uuid.uuid4()}/x.csv", state=state)


@pytest.mark.django_db
@pytest.mark.parametrize(("from_state", "to_state"), [p for p in ALL_PAIRS if p[1] in ALLOWED[p[0]]])
def test_an_allowed_move_changes_the_state_and_writes_one_event(user, from_state, to_state):
    job = make_job(user, from_state)

    job_transition(job_id=job.id, to=to_state, expected=from_state, reason="test", actor="tester")

    job.refresh_from_db()
    assert job.state == to_state
    event = JobEvent.objects.get(job=job)
    assert (event.from_state, event.to_state, event.reason, event.actor) == (from_state, to_state, "test", "tester")


@pytest.mark.django_db
@pytest.mark.parametrize(("from_state", "to_state"), [p for p in ALL_PAIRS if p[1] not in ALLOWED[p[0]]])
def test_a_move_outside_the_table_is_refused_and_changes_nothing(user, from_state, to_state):
    job = make_job(user, from_state)

    with pytest.raises(TransitionRefused, match=f"cannot move from {from_state} to {to_state}"):
        job_transition(job_id=job.id, to=to_state, reason="test", actor="tester")

    job.refresh_from_db()
    assert job.state == from_state
    assert not JobEvent.objects.filter(job=job).exists()


@pytest.mark.django_db
def test_terminal_states_have_no_way_out_but_replay_and_operator_retry():
    assert ALLOWED[S.COMPLETED] == frozenset()
    assert ALLOWED[S.CANCELLED] == frozenset()
    assert ALLOWED[S.FAILED] == {S.QUEUED}
    assert ALLOWED[S.DEAD] == {S.QUEUED}


@pytest.mark.django_db
def test_a_stale_expectation_is_refused(user):
    job = make_job(user, S.QUEUED)
    job_transition(job_id=job.id, to=S.CANCELLED, expected=S.QUEUED)

    with pytest.raises(TransitionRefused, match="is CANCELLED, expected QUEUED"):
        job_transition(job_id=job.id, to=S.PROCESSING, expected=S.QUEUED)


@pytest.mark.django_db
def test_a_worker_that_lost_its_claim_cannot_complete_the_job(user):
    job = make_job(user, S.QUEUED)
    first = services.job_claim(job_id=job.id, worker="w1")
    # The sweeper took the job back (lease expired) and another worker claimed it.
    job_transition(job_id=job.id, to=S.QUEUED, expected=S.PROCESSING)
    second = services.job_claim(job_id=job.id, worker="w2")

    with pytest.raises(TransitionRefused, match="no longer held by this worker"):
        services.job_complete(job=first, result={"rows": 1}, result_keys=[], actor="worker:w1")

    services.job_complete(job=second, result={"rows": 2}, result_keys=[], actor="worker:w2")
    job.refresh_from_db()
    assert (job.state, job.result, job.attempts) == (S.COMPLETED, {"rows": 2}, 2)


@pytest.mark.django_db
def test_a_duplicate_message_cannot_complete_a_job_twice(user):
    job = make_job(user, S.QUEUED)
    claimed = services.job_claim(job_id=job.id, worker="w1")
    services.job_complete(job=claimed, result={"rows": 1}, result_keys=[], actor="worker:w1")

    assert services.job_claim(job_id=job.id, worker="w2") is None
    with pytest.raises(TransitionRefused):
        services.job_complete(job=claimed, result={"rows": 9}, result_keys=[], actor="worker:w1")
    job.refresh_from_db()
    assert job.result == {"rows": 1}
    assert job.events.filter(to_state=S.COMPLETED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_when_workers_race_to_claim_one_job_exactly_one_wins(user):
    jobs = [make_job(user, S.QUEUED) for _ in range(10)]
    for job in jobs:
        barrier = threading.Barrier(8)
        winners: list = []

        def claim(n: int, job=job, barrier=barrier, winners=winners) -> None:
            barrier.wait()
            try:
                if services.job_claim(job_id=job.id, worker=f"w{n}") is not None:
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


@pytest.mark.django_db(transaction=True)
def test_replaying_a_dead_letter_twice_queues_the_job_once(user):
    job = make_job(user, S.PROCESSING)
    services.job_kill(job_id=job.id, expected=S.PROCESSING, reason="attempts exhausted", actor="test")
    letter = DeadLetter.objects.get(job=job)

    services.dead_letter_replay(dead_letter=letter, actor="staff:1")
    with pytest.raises(services.JobError, match="not DEAD"):
        services.dead_letter_replay(dead_letter=letter, actor="staff:1")

    job.refresh_from_db()
    letter.refresh_from_db()
    assert job.state == S.QUEUED
    assert letter.replay_count == 1
    assert job.events.filter(to_state=S.QUEUED).count() == 1


@pytest.mark.django_db
def test_cancelling_a_queued_job_is_immediate_and_a_running_one_is_flagged(user):
    queued = make_job(user, S.QUEUED)
    running = make_job(user, S.PROCESSING)

    assert services.job_cancel(job=queued, actor="user").state == S.CANCELLED
    assert services.job_cancel(job=running, actor="user").state == S.PROCESSING
    running.refresh_from_db()
    assert running.cancel_requested is True

    completed = make_job(user, S.COMPLETED)
    with pytest.raises(services.JobError, match="a COMPLETED job cannot be cancelled"):
        services.job_cancel(job=completed, actor="user")


def test_retry_backoff_grows_exponentially_with_jitter_and_a_cap(settings):
    settings.JOB_RETRY_BACKOFF_BASE = 1
    settings.JOB_RETRY_BACKOFF_MAX = 10
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (12, 10)]:
        delays = [services.retry_delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_a_new_job_is_inserted_with_its_created_event_exactly_as_the_orm_would_write_it(user):
    """insert_created writes the row and its event in one hand-written statement; every
    column must read back as the object holds it, as after Model.save."""
    from jobs.state_machine import insert_created

    job = Job(owner=user, job_type="CSV_ROW_COUNT", params={"delimiter": ";", "ünï": [1, None]}, input_bucket="b",
              input_key=f"uploads/{user.pk}/k", input_size=12, progress_total=12, max_attempts=3,
              idempotency_key="key-1", request_fingerprint="f" * 64)
    event = insert_created(job, actor=f"user:{user.pk}")

    stored = Job.objects.get(pk=job.pk)
    for field in Job._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(job, field.attname), field.name
    assert stored.state == JobState.CREATED and stored.created_at == stored.updated_at
    assert list(stored.events.values_list("pk", "from_state", "to_state", "actor", "created_at")) == [
        (event.pk, "", JobState.CREATED, f"user:{user.pk}", stored.created_at)]

    twin = Job(owner=user, job_type="CSV_ROW_COUNT", input_bucket="b", input_key="k", idempotency_key="key-1")
    with pytest.raises(IntegrityError):
        insert_created(twin, actor="user")
    assert Job.objects.filter(idempotency_key="key-1").count() == 1  # the transaction is still usable
    assert not JobEvent.objects.filter(job_id=twin.pk).exists()


def test_a_job_created_and_queued_at_once_is_one_row_with_both_events_as_the_orm_would_write_them(user):
    """insert_queued (job_create outside a transaction) writes the row already QUEUED and its
    CREATED and QUEUED events in one statement: what insert_created and the on-commit
    enqueue write in two."""
    from jobs.state_machine import insert_queued

    job = Job(owner=user, job_type="CSV_ROW_COUNT", params={"delimiter": ";"}, input_bucket="b",
              input_key=f"uploads/{user.pk}/k", input_size=12, progress_total=12, max_attempts=3,
              idempotency_key="key-2", request_fingerprint="f" * 64)
    task_id = str(uuid.uuid4())
    returned = insert_queued(job, actor=f"user:{user.pk}", enqueuer="enqueuer",
                             changes=services._enqueue_changes(job, task_id))

    stored = Job.objects.get(pk=job.pk)
    for field in Job._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(returned, field.attname), field.name
    assert stored.state == JobState.QUEUED and stored.queued_at == stored.created_at == stored.updated_at
    assert stored.celery_task_id == task_id and stored.task_ids == [task_id] and stored.publish_count == 1
    events = list(stored.events.order_by("pk").values_list("pk", "from_state", "to_state", "actor", "reason"))
    assert events == [(returned.created_event.pk, "", JobState.CREATED, f"user:{user.pk}", "created"),
                      (returned.transition_event.pk, JobState.CREATED, JobState.QUEUED, "enqueuer", "created")]

    twin = Job(owner=user, job_type="CSV_ROW_COUNT", input_bucket="b", input_key="k", idempotency_key="key-2")
    with pytest.raises(IntegrityError):
        insert_queued(twin, actor="user", enqueuer="enqueuer", changes=services._enqueue_changes(twin, task_id))
    assert Job.objects.filter(idempotency_key="key-2").count() == 1  # the transaction is still usable
    assert not JobEvent.objects.filter(job_id=twin.pk).exists()
    with pytest.raises(TransitionRefused, match="starts CREATED"):
        insert_queued(Job(owner=user, state=JobState.QUEUED), actor="user", enqueuer="e", changes={})
    with pytest.raises(TransitionRefused, match="cannot move from CREATED to COMPLETED"):
        state_machine._insert(Job(owner=user), actor="user", then=(JobState.COMPLETED, "e", {}))


def _change_after_first_read(monkeypatch, change):
    """Runs `change` (another actor's committed write) right after the transition's first
    read of the row, so its compare-and-set meets a row that moved on in between."""
    from jobs import state_machine

    original, calls = state_machine._rows.read, []

    def read(job_id):
        row = original(job_id)
        calls.append(job_id)
        if len(calls) == 1:
            change()
        return row

    monkeypatch.setattr(state_machine._rows, "read", read)
    return calls


@pytest.mark.django_db
def test_a_move_that_loses_a_race_is_judged_again_on_the_row_the_winner_left(user, monkeypatch):
    job = make_job(user, S.CREATED)
    calls = _change_after_first_read(monkeypatch, lambda: services.job_cancel(job=job, actor="user:owner"))

    # A move with a function of the row reads it first (the enqueue appends a task id).
    assert services.job_enqueue(job_id=job.id, reason="created", actor="enqueuer") is None  # it is CANCELLED now

    job.refresh_from_db()
    assert len(calls) == 2  # the enqueue's read and its second (the cancel is one statement, no read)
    assert job.state == S.CANCELLED and job.task_ids == [] and job.queued_at is None
    assert list(job.events.values_list("from_state", "to_state")) == [(S.CREATED, S.CANCELLED)]


@pytest.mark.django_db
def test_a_row_touched_in_between_but_still_movable_is_moved_once(user, monkeypatch):
    job = services.job_claim(job_id=make_job(user, S.QUEUED).id, worker="w1")
    # A progress write between the read and the write: same state, new version.
    calls = _change_after_first_read(monkeypatch, lambda: services.job_record_progress(job=job, bytes_read=5))

    # (Changes given as a function of the row: this move reads it first.)
    done = job_transition(job_id=job.id, to=S.COMPLETED, expected=S.PROCESSING, claim_token=job.claim_token,
                          changes=lambda row: {"result": {"rows": 1}, "result_keys": ["k"]})

    stored = Job.objects.get(pk=job.pk)
    assert len(calls) == 2
    assert done.state == stored.state == S.COMPLETED and stored.result == {"rows": 1}
    assert stored.events.filter(to_state=S.COMPLETED).count() == 1


def _count_reads(monkeypatch) -> list:
    original, calls = state_machine._rows.read, []

    def read(job_id):
        calls.append(job_id)
        return original(job_id)

    monkeypatch.setattr(state_machine._rows, "read", read)
    return calls


@pytest.mark.django_db
def test_a_current_copy_saves_the_read_and_a_stale_one_falls_back_to_it(user, monkeypatch):
    claimed = services.job_claim(job_id=make_job(user, S.QUEUED).id, worker="w1")
    reads = _count_reads(monkeypatch)
    # Someone else's progress write: the row has a new version the worker's copy lacks.
    services.job_record_progress(job=copy.copy(claimed), bytes_read=5)
    stale = copy.copy(claimed)

    done = services.job_complete(job=stale, result={"rows": 1}, result_keys=["k"], actor="worker:w1")

    stored = Job.objects.get(pk=claimed.pk)
    assert len(reads) == 1  # the copy's compare-and-set matched nothing; the row was read
    assert done.state == stored.state == S.COMPLETED and stored.result == {"rows": 1}
    assert stored.events.filter(to_state=S.COMPLETED).count() == 1
    assert stale.state == S.PROCESSING  # the caller's copy is not modified

    # A copy that is current (the worker's own progress writes keep it so) needs no read.
    again = services.job_claim(job_id=make_job(user, S.QUEUED).id, worker="w1")
    services.job_record_progress(job=again, bytes_read=5)
    reads.clear()
    services.job_complete(job=again, result={"rows": 2}, result_keys=["k"], actor="worker:w1")
    assert reads == [] and Job.objects.get(pk=again.pk).state == S.COMPLETED

    # As does the enqueue of a job its creator has just inserted.
    created = make_job(user, S.CREATED)
    queued = services.job_enqueue(job_id=created.id, reason="created", actor="enqueuer", current=created)
    assert reads == [] and queued.state == Job.objects.get(pk=created.pk).state == S.QUEUED


@pytest.mark.django_db
def test_a_stale_copy_cannot_move_a_job_the_row_says_is_elsewhere(user, monkeypatch):
    claimed = services.job_claim(job_id=make_job(user, S.QUEUED).id, worker="w1")
    job_transition(job_id=claimed.id, to=S.QUEUED, expected=S.PROCESSING, reason="lease expired")
    reads = _count_reads(monkeypatch)

    with pytest.raises(TransitionRefused, match="is QUEUED, expected PROCESSING"):
        services.job_complete(job=claimed, result={"rows": 1}, result_keys=["k"], actor="worker:w1")

    stored = Job.objects.get(pk=claimed.pk)
    assert len(reads) == 1 and stored.state == S.QUEUED and stored.result is None
    assert not stored.events.filter(to_state=S.COMPLETED).exists()


@pytest.mark.django_db
def test_a_claim_is_one_statement_that_writes_what_a_read_and_write_would(user, monkeypatch):
    retrying = make_job(user, S.QUEUED)
    first = services.job_claim(job_id=retrying.id, worker="w0")
    job_transition(job_id=retrying.id, to=S.RETRYING, expected=S.PROCESSING, claim_token=first.claim_token)
    reads = _count_reads(monkeypatch)

    claimed = services.job_claim(job_id=retrying.id, worker="w1")

    stored = Job.objects.get(pk=retrying.pk)
    assert reads == []
    fields = [f.attname for f in Job._meta.concrete_fields]
    assert [getattr(claimed, name) for name in fields] == [getattr(stored, name) for name in fields]
    assert (stored.state, stored.attempts, stored.worker) == (S.PROCESSING, 2, "w1")
    assert stored.claim_token not in (None, first.claim_token) and stored.lease_expires_at > stored.started_at
    event = stored.events.order_by("-id").first()
    assert (event.from_state, event.to_state, event.attempt, event.actor) == (S.RETRYING, S.PROCESSING, 2, "worker:w1")
    assert claimed.transition_event.pk == event.pk and claimed.transition_event.from_state == S.RETRYING


@pytest.mark.django_db
def test_a_one_statement_move_that_finds_the_row_elsewhere_reads_it_to_say_why(user, monkeypatch):
    cancelled = make_job(user, S.CANCELLED)
    reads = _count_reads(monkeypatch)

    assert services.job_claim(job_id=cancelled.id, worker="w1") is None
    with pytest.raises(TransitionRefused, match="is CANCELLED, expected QUEUED/RETRYING"):
        job_transition(job_id=cancelled.id, to=S.PROCESSING, expected=(S.QUEUED, S.RETRYING), changes={})
    assert len(reads) == 2 and not cancelled.events.exists()
    assert Job.objects.get(pk=cancelled.pk).attempts == 0

    assert services.job_claim(job_id=uuid.uuid4(), worker="w1") is None  # no such job
    # A worker's claim token is part of the one statement: another token moves nothing.
    held = services.job_claim(job_id=make_job(user, S.QUEUED).id, worker="w1")
    with pytest.raises(TransitionRefused, match="no longer held by this worker"):
        job_transition(job_id=held.id, to=S.FAILED, expected=S.PROCESSING, claim_token=uuid.uuid4(),
                       changes={"error_code": "x"})
    assert Job.objects.get(pk=held.pk).state == S.PROCESSING
