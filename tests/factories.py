"""Test data: factory_boy factories for rows, and `make_job` for jobs moved through the services.

JobFactory writes a row in any state directly (for the state machine's own tests, which
need every state as a starting point). `make_job` makes a job the way production does:
created through job_create on an uploaded object, then moved by the services a worker
and an operator use, and run by the real runner where a state needs a result.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import factory
import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone
from factory.django import DjangoModelFactory

import storage
from jobs import runner
from jobs.models import TERMINAL_STATES, Job, JobState
from jobs.services.actions import job_cancel
from jobs.services.create import job_create
from jobs.services.execution import job_claim, job_fail, job_kill

S = JobState
CSV = b"name,size\na,1\nb,2\nc,3\n"


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests")


class JobFactory(DjangoModelFactory):
    """A job row in `state`, with the fields that state implies (a claim while PROCESSING,
    a finish time once terminal). Its input object is not uploaded."""

    class Meta:
        model = Job

    owner = factory.SubFactory(UserFactory)
    job_type = "CSV_ROW_COUNT"
    input_bucket = factory.LazyFunction(storage.input_bucket)
    input_key = factory.LazyAttribute(lambda job: storage.upload_key(job.owner.pk, "input.csv"))
    input_name = "input.csv"
    state = S.CREATED
    attempts = factory.LazyAttribute(lambda job: 0 if job.state in (S.CREATED, S.QUEUED) else 1)
    claim_token = factory.LazyAttribute(lambda job: uuid.uuid4() if job.state == S.PROCESSING else None)
    worker = factory.LazyAttribute(lambda job: "factory-worker" if job.state == S.PROCESSING else "")
    lease_expires_at = factory.LazyAttribute(
        lambda job: timezone.now() + timedelta(minutes=5) if job.state == S.PROCESSING else None)
    queued_at = factory.LazyAttribute(lambda job: None if job.state == S.CREATED else timezone.now())
    finished_at = factory.LazyAttribute(lambda job: timezone.now() if job.state in TERMINAL_STATES else None)


def job_in_state(owner, state: str = S.CREATED, *, input_key: str, run: bool = False, **create_kwargs) -> Job:
    """A job of `owner` on the uploaded `input_key`, moved to `state` by the services.

    COMPLETED, and FAILED with run=True, come from the real runner in this process (the
    result, or the processor's error, is real); FAILED otherwise is the worker's job_fail
    with a fixed error ("line 3: broken"); DEAD has the reason "attempts exhausted".
    """
    if state == S.CREATED:
        # job_create queues at once; a CREATED job is one whose enqueue has not happened yet.
        info = storage.head(storage.input_bucket(), input_key)
        fields = {"job_type": "CSV_ROW_COUNT", "input_name": input_key.rsplit("/", 1)[-1], **create_kwargs}
        return JobFactory(owner=owner, input_key=input_key, input_size=info.size, progress_total=info.size,
                          input_etag=info.etag, **fields)
    job = job_create(owner=owner, input_key=input_key, **{"job_type": "CSV_ROW_COUNT", **create_kwargs}).job
    if state == S.QUEUED:
        return job
    if state == S.CANCELLED:
        return job_cancel(job=job, actor="test")
    if state == S.COMPLETED or (state == S.FAILED and run):
        # The heartbeat beats on its own connection, which cannot see a job still inside the
        # test's transaction: on a slow machine it would find the claim gone and stop the run.
        with override_settings(JOB_HEARTBEAT_SECONDS=3600):
            runner.job_run(job_id=job.id, worker="test-inprocess")
        job.refresh_from_db()
        assert job.state == state, (job.state, job.error_message)
        return job
    claimed = job_claim(job_id=job.id, worker="test-worker")
    if state == S.PROCESSING:
        return claimed
    if state == S.FAILED:
        return job_fail(job=claimed, code="bad_input", message="line 3: broken", actor="test")
    if state == S.DEAD:
        return job_kill(job_id=job.id, expected=S.PROCESSING, claim_token=claimed.claim_token,
                        reason="attempts exhausted", traceback="Traceback: boom", actor="test")
    raise ValueError(f"no recipe for a {state} job")


@pytest.fixture
def make_job(upload):
    """make_job(owner, state="CREATED", *, data=CSV, name="input.csv", run=False, **job_create kwargs):
    uploads `data` as the owner's `name` and returns a job on it in `state` (see job_in_state)."""

    def make(owner, state: str = S.CREATED, *, data: bytes = CSV, name: str = "input.csv", run: bool = False,
             **create_kwargs) -> Job:
        return job_in_state(owner, state, input_key=upload(owner, data, name), run=run, **create_kwargs)

    return make
