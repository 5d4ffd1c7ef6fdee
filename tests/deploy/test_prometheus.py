"""A real Prometheus scrapes the platform: the web process's /metrics and a real worker's
exporter (prometheus-client multiprocess mode across its prefork pool), while jobs run to
COMPLETED; PromQL over its HTTP API returns what just happened. The alert rules pass
promtool's checks and their unit tests (deploy/prometheus/alerts_test.yml).

Needs Debian's `prometheus` package (/usr/bin/prometheus, /usr/bin/promtool; `.ci/run`
installs it); skipped with a message without it.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from devstack.servers import die_with_parent, free_port, wait_for_port
from jobs.metrics_export import WorkerCollector
from jobs.models import JobState
from tests.conftest import wait_for_state, wait_until
from tests.factories import CSV
from tests.support.deadlines import within
from tests.support.processes import terminate

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

needs_prometheus = pytest.mark.skipif(not Path(PROMETHEUS).is_file(),
                                      reason="no prometheus binary (apt-get install prometheus)")
needs_promtool = pytest.mark.skipif(not Path(PROMTOOL).is_file(), reason="no promtool (apt-get install prometheus)")


class Prometheus:
    """Our own /usr/bin/prometheus on a free loopback port, with a temporary config and TSDB."""

    def __init__(self, workdir: Path, targets: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jobs = "".join(f"  - job_name: {name}\n    static_configs:\n      - targets: ['{target}']\n"
                       for name, target in targets.items()) or "  []\n"
        config = workdir / "prometheus.yml"
        config.write_text(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{jobs}")
        self.log = workdir / "prometheus.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGKILL))
        wait_for_port(self.port, within(30), self.proc, "prometheus")

    def query(self, promql: str) -> list[dict]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        terminate(self.proc)


@pytest.fixture
def start_prometheus(tmp_path):
    started: list[Prometheus] = []

    def start(targets: dict[str, str]) -> Prometheus:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        started.append(Prometheus(workdir, targets))
        return started[-1]

    yield start
    for prometheus in started:
        prometheus.stop()


@needs_promtool
def test_the_alert_rules_pass_promtool_check_and_their_unit_tests():
    checked = subprocess.run([PROMTOOL, "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True, text=True)
    tested = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True, text=True)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "4 rules found" in checked.stdout
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_the_example_scrape_config_passes_promtool(tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text((RULES / "prometheus.yml").read_text().replace(
        "/etc/prometheus/jobplatform-metrics-token", str(tmp_path / "token")))
    (tmp_path / "token").write_text("scrape-secret\n")
    shutil.copy(RULES / "alerts.yml", tmp_path / "alerts.yml")

    checked = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True, text=True)

    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_prometheus
@pytest.mark.slow
def test_prometheus_scrapes_web_and_worker_and_counts_the_jobs_just_completed(
        user, upload, start_web_server, celery_process, start_prometheus, tmp_path):
    worker_port = free_port()
    multiproc = tmp_path / "prometheus-multiproc"
    multiproc.mkdir()
    web = start_web_server()
    celery_process("worker", concurrency=2, extra_env={
        "WORKER_METRICS_PORT": str(worker_port), "WORKER_METRICS_ADDR": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc)})
    prometheus = start_prometheus({"jobplatform-web": f"127.0.0.1:{web.port}",
                                   "jobplatform-worker": f"127.0.0.1:{worker_port}"})
    key = upload(user, CSV)
    jobs = 6

    with web.client(headers={"Authorization": f"Token {Token.objects.create(user=user).key}"}) as api:
        created = [api.post("/api/v1/jobs/", json={"job_type": "CSV_ROW_COUNT", "input_object_key": key})
                   for _ in range(jobs)]
    assert [r.status_code for r in created] == [201] * jobs
    for response in created:
        wait_for_state(response.json()["id"], JobState.COMPLETED, timeout=60)

    completed = 'sum(jobplatform_job_transitions_total{job="jobplatform-worker",to_state="COMPLETED"})'
    wait_until(lambda: prometheus.scalar(completed) == jobs, 30, f"Prometheus to see {jobs} completed jobs")
    assert prometheus.scalar('sum(jobplatform_job_queue_wait_seconds_count{job="jobplatform-worker"})') == jobs
    buckets = prometheus.query('sum by (le) (jobplatform_job_queue_wait_seconds_bucket{job="jobplatform-worker"})')
    assert {b["metric"]["le"] for b in buckets} >= {"0.01", "1.0", "+Inf"}
    p95 = prometheus.scalar("histogram_quantile(0.95, sum by (le) "
                            '(jobplatform_job_queue_wait_seconds_bucket{job="jobplatform-worker"}))')
    assert p95 is not None and math.isfinite(p95) and p95 >= 0
    assert prometheus.scalar('sum(jobplatform_job_input_bytes_total{job="jobplatform-worker"})') == jobs * len(CSV)
    assert prometheus.scalar('sum(jobplatform_job_transitions_total{job="jobplatform-web",to_state="QUEUED"})') == jobs
    assert prometheus.scalar('jobplatform_ready{job="jobplatform-web"}') == 1
    assert prometheus.scalar('jobplatform_worker_concurrency{job="jobplatform-worker"}') == 2
    assert prometheus.scalar('jobplatform_worker_jobs_running{job="jobplatform-worker"}') == 0
    assert prometheus.scalar('sum(up{job=~"jobplatform-.*"})') == 2


def dashboard_queries() -> list[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "jobplatform.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def named_metrics(text: str) -> set[str]:
    """Metric names in PromQL or rules, without the suffixes a counter or histogram adds."""
    return {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in re.findall(r"\bjobplatform_[a-z_]+", text)}


@pytest.mark.django_db
def test_the_alerts_and_the_dashboard_name_only_metrics_the_platform_exports(client):
    web = {family.name for family in text_string_to_metric_families(client.get("/metrics").content.decode())}
    worker = {family.name for family in WorkerCollector(SimpleNamespace(concurrency=2)).collect()}
    exported = web | worker

    named = named_metrics((RULES / "alerts.yml").read_text()) | named_metrics("\n".join(dashboard_queries()))

    assert named - exported == set()
    assert len(named) >= 12


@needs_prometheus
def test_every_dashboard_query_is_valid_promql(start_prometheus):
    prometheus = start_prometheus({})

    for expr in dashboard_queries():
        prometheus.query(expr.replace("$__rate_interval", "1m"))
