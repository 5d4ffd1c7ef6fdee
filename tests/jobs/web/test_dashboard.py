"""The operator dashboard: staff only; workers (a real Celery worker), queue depth, the last
hour's throughput and queue wait as SVG charts, dead letters; and an answer within a few
seconds when the broker is unreachable."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

from jobs.models import JobState
from jobs.services.actions import job_cancel
from jobs.services.execution import job_claim, job_complete, job_kill
from tests.conftest import wait_for_state, wait_until

S = JobState


@pytest.fixture
def operator(client, make_user):
    staff = make_user("operator", staff=True)
    client.force_login(staff)
    return staff


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/ops/", "/ops/?fragment=1", "/ops/data.json", "/ops/bulk/?action=replay_dead"])
def test_the_dashboard_is_staff_only(client, signed_in, path):
    refused = signed_in.get(path)
    assert refused.status_code == 403 and b"dashboard is for staff" in refused.content
    signed_in.logout()
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_the_staff_navigation_links_the_dashboard(client, operator):
    assert b'href="/ops/"' in client.get("/").content


@pytest.mark.django_db
def test_the_last_hours_throughput_and_queue_wait_are_drawn_as_charts(client, operator, user, make_job):
    for _ in range(3):
        claimed = job_claim(job_id=make_job(user, "QUEUED").id, worker="test-worker")
        job_complete(job=claimed, result={"rows": 1}, result_keys=[], actor="worker:test")
    claimed = job_claim(job_id=make_job(user, "QUEUED").id, worker="test-worker")
    job_kill(job_id=claimed.id, expected=S.PROCESSING, claim_token=claimed.claim_token, reason="attempts exhausted",
             actor="worker:test")

    data = client.get("/ops/data.json").json()
    hour = data["last_hour"]
    assert len(hour["minutes"]) == 60
    assert sum(hour["completed"]) == 3 and sum(hour["failed"]) == 1
    assert sum(hour["claims"]) == 4 and max(v for v in hour["wait_avg_seconds"] if v is not None) >= 0
    assert data["jobs"]["dead"] == 1

    page = client.get("/ops/").content.decode()
    charts = re.findall(r"<svg class=\"chart\".*?</svg>", page, re.S)
    assert len(charts) == 2
    for chart in charts:
        assert re.search(r'<path d="M[\d.]+,[\d.]+', chart), "a line with data"
        assert "data-point" in chart
    assert 'data-dead-count>1<' in page


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_lists_a_running_worker_and_the_job_it_runs(client, operator, user, upload, worker):
    from jobs.services.create import job_create

    key = upload(user, b"x" * (2 * 1024 * 1024), "big.bin")
    slow = job_create(owner=user, job_type="TEST_SLOW", input_key=key, params={"chunk_delay": 1.0}).job
    wait_for_state(slow.id, S.PROCESSING, timeout=60)

    def running():
        data = client.get("/ops/data.json").json()
        workers = {w["name"]: w for w in data["broker"]["workers"]}
        mine = next((w for name, w in workers.items() if name.startswith(worker.node + "@")), None)
        return data if mine and any(t["job_id"] == str(slow.id) for t in mine["running"]) else None

    data = wait_until(running, timeout=20, what="the worker and its job on the dashboard")
    assert data["broker"]["reachable"] is True
    assert set(data["broker"]["queues"]) >= {"jobs", "maintenance", "dead-letter"}
    assert all(isinstance(n, int) for n in data["broker"]["queues"].values())
    page = client.get("/ops/?fragment=1").content.decode()
    assert worker.node in page and str(slow.id)[:8] in page
    job_cancel(job=slow, actor="test")


def sign_in(server, username: str, password: str = "pw-for-tests-123") -> httpx.Client:
    session = server.client(follow_redirects=False)
    session.get("/login/")
    response = session.post("/login/", data={"username": username, "password": password,
                                             "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert response.status_code == 302, response.text[:500]
    return session


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_unreachable_the_dashboard_answers_within_seconds_and_says_so(start_web_server, make_user):
    make_user("operator", staff=True)
    # Nothing listens on port 1: every connection to this broker is refused.
    server = start_web_server(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    session = sign_in(server, "operator")

    # The deadline is the request's: a dashboard that hangs on the broker raises here.
    response = session.get("/ops/data.json", timeout=10)
    assert response.status_code == 200
    broker = response.json()["broker"]
    assert broker["reachable"] is False and broker["error"]
    assert broker["workers"] == [] and set(broker["queues"].values()) == {None}
    page = session.get("/ops/", timeout=10)
    assert page.status_code == 200 and "Broker unreachable" in page.text


@pytest.mark.django_db(transaction=True)
def test_with_a_broker_that_accepts_but_never_answers_the_dashboard_still_answers(start_web_server, make_user):
    make_user("operator", staff=True)
    # A listening socket nobody serves: connections are accepted by the kernel, then silence.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        server = start_web_server(CELERY_BROKER_URL=f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        session = sign_in(server, "operator")
        for _ in range(2):  # the second finds the first probe still hanging and does not start another
            response = session.get("/ops/data.json", timeout=10)
            assert response.status_code == 200
            assert response.json()["broker"]["reachable"] is False
    finally:
        silent.close()
