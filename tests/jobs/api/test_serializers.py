"""The job serializers' written-out to_representation against DRF's own field machinery.

JobSerializer and JobDetailSerializer build their dicts by hand for speed; the declared
fields remain the schema. Here both paths serialize the same jobs, in every state a job
can be in, and must agree key for key, value for value, in order.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers

from jobs.api.serializers import JobDetailSerializer, JobSerializer
from jobs.models import Job, JobState
from jobs.services.create import job_create
from jobs.services.execution import job_complete

pytestmark = pytest.mark.django_db


def _generic(serializer_cls, job) -> dict:
    serializer = serializer_cls(job)
    return serializers.Serializer.to_representation(serializer, job)


def _both(job: Job) -> None:
    job = Job.objects.get(pk=job.pk)  # as the API reads it: values from the database
    for cls in (JobSerializer, JobDetailSerializer):
        fast, generic = cls(job).data, _generic(cls, job)
        assert json.dumps(fast) == json.dumps(generic), cls.__name__
    assert [e["to"] for e in JobDetailSerializer(job).data["events"]] == list(
        job.events.values_list("to_state", flat=True))


@pytest.mark.parametrize("state", [JobState.CREATED, JobState.QUEUED, JobState.PROCESSING, JobState.FAILED,
                                   JobState.DEAD])
def test_written_out_representation_matches_drf_in_every_state(make_job, user, state):
    _both(make_job(user, state, params={"delimiter": ";", "has_header": False}))


def test_completed_job_with_result_progress_and_odd_values(make_job, user):
    job = make_job(user, JobState.PROCESSING)
    Job.objects.filter(pk=job.pk).update(progress_bytes=7, progress_total=9)
    _both(job)
    done = job_complete(job=job, result={"rows": 3, "nested": {"ünïcode": [1, 2.5, None]}},
                                 result_keys=["out/a.json", "out/b.csv"], actor="test")
    assert JobSerializer(done).data["progress"]["percent"] == 100.0
    _both(done)


def test_null_result_zero_total_and_a_non_utc_time_zone(make_job, user):
    job = make_job(user, JobState.QUEUED)
    Job.objects.filter(pk=job.pk).update(progress_total=0, result=None,
                                         finished_at=timezone.now() + timedelta(microseconds=1))
    _both(job)
    with timezone.override("Asia/Kolkata"):
        _both(job)
        assert JobSerializer(Job.objects.get(pk=job.pk)).data["created_at"].endswith("+05:30")


@pytest.mark.django_db(transaction=True)
def test_the_create_response_shows_what_a_fresh_read_of_the_queued_job_shows(user, upload):
    """The create hands the events it wrote to the serializer instead of reading them back.
    A real commit, as in a request: the job is queued before the response is written."""
    from tests.conftest import purge_queues

    key = upload(user, b"a,b\n1,2\n", "people.csv")
    try:
        result = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key)
    finally:
        purge_queues()  # the run message has no worker here and must not reach a later test's

    assert result.job.state == JobState.QUEUED
    assert [(e.from_state, e.to_state) for e in result.events] == [("", "CREATED"), ("CREATED", "QUEUED")]
    shown = JobDetailSerializer(result.job, context={"events": result.events}).data
    fresh = JobDetailSerializer(Job.objects.get(pk=result.job.pk)).data
    # Equal as JSON (PostgreSQL's jsonb keeps an object's keys in its own order).
    assert json.loads(json.dumps(shown)) == json.loads(json.dumps(fresh))
