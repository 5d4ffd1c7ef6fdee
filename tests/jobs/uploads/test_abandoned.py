"""The periodic clean-up of abandoned multipart uploads, against the real S3 server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

import storage
from jobs.services.maintenance import uploads_abort_abandoned
from jobs.uploads import services
from jobs.uploads.models import UploadSession
from storage import multipart
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1024 * 1024


def open_upload_ids(bucket: str) -> dict[str, dict]:
    return {u["upload_id"]: u for u in multipart.list_open(bucket, storage.prefixed(""))}


def start_rowless_upload(bucket: str, user, name: str) -> dict:
    """A multipart upload with no UploadSession row, as a killed web process or worker leaves one."""
    upload_id = multipart.create(bucket, storage.upload_key(user.pk, name))
    return open_upload_ids(bucket)[upload_id]


def age(session: UploadSession, seconds: float) -> None:
    UploadSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(seconds=seconds))


@pytest.mark.parametrize("bucket", ["input", "output"])
def test_an_upload_without_a_row_older_than_the_setting_is_aborted_and_a_fresh_one_kept(user, bucket):
    bucket = storage.input_bucket() if bucket == "input" else storage.output_bucket()
    old = start_rowless_upload(bucket, user, "old.bin")
    # S3's Initiated times may be whole seconds: the fresh one must start in a later one.
    wait_until(lambda: timezone.now() > old["initiated"] + timedelta(seconds=1.5), what="a later second")
    fresh = start_rowless_upload(bucket, user, "fresh.bin")
    assert fresh["initiated"] > old["initiated"]
    older_than = timedelta(seconds=settings.UPLOAD_ABANDONED_SECONDS)
    # Ages measured from a moment at which `old` has been open just past the setting, `fresh` not yet.
    now = old["initiated"] + older_than + (fresh["initiated"] - old["initiated"]) / 2

    outcome = uploads_abort_abandoned(now=now)

    remaining = open_upload_ids(bucket)
    assert old["upload_id"] not in remaining
    assert fresh["upload_id"] in remaining
    assert outcome.aborted >= 1 and outcome.errors == ()
    multipart.abort(bucket, fresh["key"], fresh["upload_id"])


def test_a_direct_upload_is_aged_by_its_row_and_marked_aborted(user):
    stale = services.multipart_create(owner=user, filename="stale.bin", size=20 * MIB)
    gone = services.multipart_create(owner=user, filename="gone.bin", size=20 * MIB)
    fresh = services.multipart_create(owner=user, filename="fresh.bin", size=20 * MIB)
    # `gone`'s upload was already removed on the server (say, by a lifecycle rule).
    multipart.abort(gone.bucket, gone.key, gone.s3_upload_id)
    for session in (stale, gone):
        age(session, settings.UPLOAD_ABANDONED_SECONDS + 60)

    outcome = uploads_abort_abandoned()

    assert {s.pk: s.status for s in UploadSession.objects.filter(owner=user)} == {
        stale.pk: UploadSession.Status.ABORTED, gone.pk: UploadSession.Status.ABORTED,
        fresh.pk: UploadSession.Status.OPEN}
    assert UploadSession.objects.get(pk=stale.pk).finished_at is not None
    remaining = open_upload_ids(storage.input_bucket())
    assert stale.s3_upload_id not in remaining
    assert fresh.s3_upload_id in remaining
    assert outcome.sessions == 2 and outcome.errors == ()
    # The owner's calls on it now answer that it is finished.
    with pytest.raises(services.JobError) as refused:
        services.multipart_sign_parts(owner=user, upload_id=stale.pk, part_numbers=[1])
    assert refused.value.code == "upload_finished"
    services.multipart_abort(owner=user, upload_id=fresh.pk)


def test_an_open_direct_upload_is_kept_while_its_row_is_young_whatever_the_servers_clock_says(user):
    session = services.multipart_create(owner=user, filename="young.bin", size=20 * MIB)
    initiated = open_upload_ids(storage.input_bucket())[session.s3_upload_id]["initiated"]
    # As if the server's clock were a day behind this one: by its clock the upload is a day old.
    UploadSession.objects.filter(pk=session.pk).update(created_at=initiated + timedelta(days=1))

    uploads_abort_abandoned(older_than=timedelta(hours=1), now=initiated + timedelta(days=1, minutes=1))

    assert session.s3_upload_id in open_upload_ids(storage.input_bucket())
    assert UploadSession.objects.get(pk=session.pk).status == UploadSession.Status.OPEN
    services.multipart_abort(owner=user, upload_id=session.pk)


def test_the_command_aborts_abandoned_uploads(user, capsys):
    session = services.multipart_create(owner=user, filename="stale.bin", size=20 * MIB)
    age(session, settings.UPLOAD_ABANDONED_SECONDS + 60)

    call_command("abort_abandoned_uploads")

    assert UploadSession.objects.get(pk=session.pk).status == UploadSession.Status.ABORTED
    assert session.s3_upload_id not in open_upload_ids(storage.input_bucket())
    assert "1 direct upload(s) marked aborted" in capsys.readouterr().out


def test_the_scheduled_task_runs_on_a_maintenance_worker(user, celery_process):
    from jobplatform.settings import worker as worker_settings
    from jobs.tasks import abort_abandoned_uploads

    assert worker_settings.CELERY_BEAT_SCHEDULE["abort-abandoned-uploads"]["task"] == abort_abandoned_uploads.name
    session = services.multipart_create(owner=user, filename="stale.bin", size=20 * MIB)
    age(session, settings.UPLOAD_ABANDONED_SECONDS + 60)
    celery_process("worker", queues="maintenance")

    abort_abandoned_uploads.delay()

    wait_until(lambda: UploadSession.objects.get(pk=session.pk).status == UploadSession.Status.ABORTED,
               timeout=30, what="the upload aborted by the worker")
    assert session.s3_upload_id not in open_upload_ids(storage.input_bucket())
