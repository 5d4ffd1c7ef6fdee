"""What the job serializers show: times in the active time zone, and a create response that
equals a fresh read of the job."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from jobs.api.serializers import JobDetailSerializer, JobSerializer
from jobs.models import Job, JobState
from jobs.services.create import job_create

pytestmark = pytest.mark.django_db


def test_times_are_iso_8601_in_the_active_time_zone(make_job, user):
    job = Job.objects.get(pk=make_job(user, JobState.QUEUED).pk)
    assert JobSerializer(job).data["created_at"].endswith("Z")
    with timezone.override("Asia/Kolkata"):
        shown = JobDetailSerializer(job).data
    assert shown["created_at"].endswith("+05:30")
    assert all(event["at"].endswith("+05:30") for event in shown["events"])


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
