"""Where Prometheus reads the metrics: `/metrics` on the web process, an exporter on each worker.

Web: a Django view. Uvicorn runs one process (with threads), so the process's own registry
is the whole story, plus two families computed at scrape time: jobs by state
(jobs.metrics.JobsCollector) and readiness (the /readyz checks). It answers a peer in
METRICS_ALLOW, or any peer sending `Authorization: Bearer <METRICS_TOKEN>`; others get 403.

Worker: Celery's prefork pool runs jobs in child processes, so every process writes its
samples to files in PROMETHEUS_MULTIPROC_DIR (set before the worker starts: the client
picks its storage when imported). The main process serves them all, summed, on
WORKER_METRICS_ADDR:WORKER_METRICS_PORT from worker_init, with the gauges only it knows
(jobs running, concurrency); a pool process that exits is marked dead.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
from collections.abc import Iterator

from celery.signals import (
    worker_init,
    worker_process_shutdown,
    worker_shutdown,
)
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from . import metrics

logger = logging.getLogger(__name__)

RUN_JOB = "jobs.run_job"


class ReadinessCollector(Collector):
    """jobplatform_ready and jobplatform_readiness_check_ok{check}: /readyz's checks, run at
    scrape time (bounded by READYZ_TIMEOUT), so an alert needs no prober of its own."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from .health import readiness  # the checks reach storage; only a scrape needs them

        body = readiness()
        ready = GaugeMetricFamily("jobplatform_ready", "1 if every /readyz check passed at this scrape.")
        ready.add_metric([], 0 if body["failed"] else 1)
        checks = GaugeMetricFamily("jobplatform_readiness_check_ok", "1 if this /readyz check passed at this scrape.",
                                   labels=["check"])
        for name, result in body["checks"].items():
            checks.add_metric([name], 1 if result["ok"] else 0)
        yield ready
        yield checks


class DefaultRegistry(Collector):
    """This process's own metrics (the default registry), beside the scrape-time families."""

    def collect(self):
        yield from REGISTRY.collect()


def multiprocess_dir() -> str:
    return settings.PROMETHEUS_MULTIPROC_DIR


@functools.cache
def web_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)  # a web run with several processes
    else:
        registry.register(DefaultRegistry())
    registry.register(metrics.JobsCollector())
    registry.register(ReadinessCollector())
    return registry


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.METRICS_ALLOW]


def scrape_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        return True
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in network for network in _allowed_networks())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        return HttpResponse("metrics are served to addresses in METRICS_ALLOW, or with "
                            "'Authorization: Bearer <METRICS_TOKEN>'\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(web_registry()), content_type=CONTENT_TYPE_LATEST)


# --- exporters of processes that serve no pages ------------------------------------------------

def serve_process_metrics(*, port: int, addr: str) -> None:
    """An exporter for a process of its own (`manage.py sweep --loop`): its registry, or every
    process's files when PROMETHEUS_MULTIPROC_DIR is set."""
    registry = REGISTRY
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=addr, registry=registry)
    logger.info("metrics.exporter addr=%s port=%s", addr, port)


# --- the worker's exporter --------------------------------------------------------------------

class WorkerCollector(Collector):
    """What the worker's main process knows at scrape time: the jobs its pool runs now, and
    its concurrency. Read there, not counted in the pool processes, so a pool process killed
    outright leaves nothing behind."""

    def __init__(self, worker) -> None:
        self.worker = worker  # Celery's WorkController: its concurrency is final once the pool runs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from .lifecycle import running_jobs  # the worker's own state: only its exporter reads it

        yield GaugeMetricFamily("jobplatform_worker_jobs_running", "Jobs this worker's pool processes run now.",
                                value=len(running_jobs()))
        concurrency = getattr(self.worker, "concurrency", None)
        if isinstance(concurrency, int) and concurrency > 0:
            yield GaugeMetricFamily("jobplatform_worker_concurrency", "Pool processes this worker runs jobs in.",
                                    value=concurrency)


_server = None


@worker_init.connect
def _start_worker_exporter(sender=None, **_) -> None:
    """In the worker's main process, before the pool forks."""
    global _server
    port = settings.WORKER_METRICS_PORT
    if not port:
        return  # settings refuse a port without PROMETHEUS_MULTIPROC_DIR
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(WorkerCollector(sender))
    _server, _ = start_http_server(port, addr=settings.WORKER_METRICS_ADDR, registry=registry)
    logger.info("worker.metrics_exporter addr=%s port=%s dir=%s", settings.WORKER_METRICS_ADDR, port,
                multiprocess_dir())


@worker_shutdown.connect
def _stop_worker_exporter(**_) -> None:
    if _server is not None:
        _server.shutdown()


@worker_process_shutdown.connect
def _pool_process_exiting(pid=None, **_) -> None:
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid or os.getpid())
