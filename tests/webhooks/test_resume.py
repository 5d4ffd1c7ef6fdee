"""A delivery whose message the broker lost is found in the database and sent."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from standardwebhooks import Webhook

from tests.conftest import purge_queues, wait_until
from webhooks.models import Delivery
from webhooks.services import deliveries_resume, secret_get

from .conftest import WORKER_ENV


def test_a_delivery_whose_message_was_lost_is_sent_by_the_resume(allow_loopback, celery_process, receiver, user,
                                                                  make_job):
    # No worker yet: the job runs in this process, and its delivery's message waits in the broker...
    job = make_job(user, "COMPLETED", callback_url=receiver.url)
    delivery = Delivery.objects.get(job=job)
    purge_queues()  # ...which loses it, as a Redis restarting empty does.
    celery_process("worker", extra_env=WORKER_ENV)

    later = timezone.now() + timedelta(seconds=settings.WEBHOOK_RESUME_AFTER_SECONDS + 1)
    assert deliveries_resume(now=later) == 1
    (request,) = receiver.wait_for(1)

    assert Webhook(secret_get(user=user).secret).verify(request.body, request.headers)["data"]["id"] == str(job.id)
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).state == "SUCCEEDED", 30, "the delivery succeeded")
    assert deliveries_resume(now=later + timedelta(hours=1)) == 0, "a delivered delivery is not sent again"


def test_a_pending_delivery_not_yet_overdue_is_left_to_its_message(allow_loopback, transactional_db, user, make_job,
                                                                 receiver):
    make_job(user, "COMPLETED", callback_url=receiver.url)

    assert deliveries_resume() == 0
