"""GET /metrics on the web app: who may read it, and what the jobplatform_* families say.

The jobs here move in this process (the services run in the test), so this process's
/metrics is the one that counts them; tests/deploy/test_prometheus.py scrapes real
servers and a real worker with a real Prometheus.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from devstack.servers import free_port, wait_for_port
from jobs import runner
from jobs.models import Job, JobState
from jobs.services.create import job_create
from jobs.services.execution import job_claim
from jobs.sweeper import sweep
from jobs.uploads.services import upload_begin
from tests.conftest import ROOT, WEB_SETTINGS, WORKER_SETTINGS, subprocess_env, wait_until
from tests.factories import CSV, JobFactory, job_in_state
from tests.support.deadlines import within

pytestmark = pytest.mark.django_db(transaction=True)
S = JobState


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_refuses_a_peer_outside_metrics_allow(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.7")

    assert response.status_code == 403
    assert b"METRICS_ALLOW" in response.content


def test_metrics_answers_the_bearer_token_from_any_address(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"

    with_token = client.get("/metrics", REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION="Bearer scrape-secret")
    wrong_token = client.get("/metrics", REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION="Bearer guessed")

    assert with_token.status_code == 200
    assert b"jobplatform_ready 1.0" in with_token.content
    assert wrong_token.status_code == 403


def test_metrics_answers_a_peer_in_an_allowed_network(client, settings):
    settings.METRICS_ALLOW = ["10.0.0.0/8"]

    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_metrics_takes_only_get(client):
    assert client.post("/metrics").status_code == 405


def test_jobs_by_state_counts_the_queued_jobs_by_type(client, user, upload):
    key = upload(user, CSV)
    for _ in range(3):
        job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key)

    samples = scrape(client)

    assert value(samples, "jobplatform_jobs", state=S.QUEUED, type="CSV_ROW_COUNT") == 3
    assert value(samples, "jobplatform_jobs_query_ok") == 1


def test_jobs_by_state_shows_an_empty_queue_as_zero_for_every_job_type(client):
    samples = scrape(client)

    for job_type in ("CSV_ROW_COUNT", "JSON_CANONICALIZE"):
        for state in (S.CREATED, S.QUEUED, S.PROCESSING, S.RETRYING):
            assert (("jobplatform_jobs", (("state", state), ("type", job_type))) in samples), (state, job_type)
    assert not any(name == "jobplatform_jobs" and dict(labels)["state"] == S.COMPLETED for name, labels in samples)


def test_a_completed_job_counts_its_transitions_queue_wait_duration_and_input_bytes(client, user, upload):
    key = upload(user, CSV)
    before = scrape(client)

    job = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key).job
    assert runner.job_run(job_id=job.id, worker="metrics-test") == S.COMPLETED
    after = scrape(client)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("jobplatform_job_transitions_total", from_state=S.CREATED, to_state=S.QUEUED,
                type="CSV_ROW_COUNT") == 1
    assert grew("jobplatform_job_transitions_total", from_state=S.PROCESSING, to_state=S.COMPLETED,
                type="CSV_ROW_COUNT") == 1
    assert grew("jobplatform_job_queue_wait_seconds_count", type="CSV_ROW_COUNT") == 1
    assert grew("jobplatform_job_processing_seconds_count", type="CSV_ROW_COUNT", outcome="completed") == 1
    assert grew("jobplatform_job_input_bytes_total", type="CSV_ROW_COUNT") == len(CSV)
    assert value(after, "jobplatform_jobs", state=S.QUEUED, type="CSV_ROW_COUNT") == 0


def test_a_failed_job_is_timed_under_outcome_failed(client, user, upload):
    key = upload(user, b"\xff\xfe not a csv \x00", "broken.csv")
    before = scrape(client)

    job = job_create(owner=user, job_type="JSON_CANONICALIZE", input_key=key).job
    assert runner.job_run(job_id=job.id, worker="metrics-test") == S.FAILED
    after = scrape(client)

    name, labels = "jobplatform_job_processing_seconds_count", {"type": "JSON_CANONICALIZE", "outcome": "failed"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_a_lease_the_sweeper_takes_back_counts_a_worker_death_and_a_sweeper_action(client, user):
    job = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED).id, worker="gone")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    before = scrape(client)

    assert sweep()["expired_leases"] == 1
    after = scrape(client)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("jobplatform_worker_deaths_total", type="CSV_ROW_COUNT") == 1
    assert grew("jobplatform_sweeper_actions_total", action="expired_leases") == 1
    assert grew("jobplatform_job_processing_seconds_count", type="CSV_ROW_COUNT", outcome="queued") == 1


def test_a_job_gone_dead_counts_a_dead_letter_by_type_and_code(client, user, upload):
    key = upload(user, CSV)
    before = scrape(client)

    job_in_state(user, S.DEAD, input_key=key)
    after = scrape(client)

    name, labels = "jobplatform_dead_letters_total", {"type": "CSV_ROW_COUNT", "code": "dead"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_a_streamed_upload_counts_its_bytes_and_duration(client, user):
    before = scrape(client)

    upload = upload_begin(owner=user, filename="counted.csv")
    upload.write(CSV)
    upload.commit()
    after = scrape(client)

    assert value(after, "jobplatform_upload_bytes_total", method="stream") - \
        value(before, "jobplatform_upload_bytes_total", method="stream") == len(CSV)
    assert value(after, "jobplatform_upload_seconds_count", method="stream") - \
        value(before, "jobplatform_upload_seconds_count", method="stream") == 1


def test_the_sweeper_process_serves_its_own_metrics(user, tmp_path):
    port = free_port()
    log = tmp_path / "sweeper.log"
    job = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED).id, worker="gone")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with open(log, "ab") as out:
        sweeper = subprocess.Popen(
            [sys.executable, "manage.py", "sweep", "--loop"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env={**subprocess_env(), **WEB_SETTINGS, "SWEEPER_METRICS_PORT": str(port)})
    try:
        wait_for_port(port, within(30), sweeper, "sweep --loop")
        counted = 'jobplatform_sweeper_actions_total{action="expired_leases"} 1.0'

        def scraped() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            return text if counted in text else None

        text = wait_until(scraped, 15, "the sweeper to count the lease it took back")
    finally:
        sweeper.terminate()
        sweeper.wait(15)

    assert Job.objects.get(pk=job.pk).state == S.QUEUED
    assert 'jobplatform_worker_deaths_total{type="CSV_ROW_COUNT"} 1.0' in text



def test_a_metrics_port_without_a_multiprocess_dir_is_refused_at_start_up():
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, capture_output=True,
                          text=True, env={**subprocess_env(), **WORKER_SETTINGS, "WORKER_METRICS_PORT": "9808",
                                          "PROMETHEUS_MULTIPROC_DIR": ""})

    assert done.returncode != 0
    assert "WORKER_METRICS_PORT is set but PROMETHEUS_MULTIPROC_DIR is not" in done.stderr
