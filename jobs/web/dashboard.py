"""The operator dashboard (staff): workers and what they run, queue depths, throughput and
queue wait over the last hour drawn as charts, dead letters, and the bulk actions.

What the broker says comes from one probe at a time, in a thread with a hard deadline, so a
dead or hung broker makes the page say "broker unreachable" within PROBE_DEADLINE_SECONDS
instead of hanging it. What the database says is bounded: the last hour of JobEvents (a
range on their created_at index) and counts of jobs by state (job_state_lease, which leads with the state).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from celery import current_app
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Max
from django.db.models.functions import TruncMinute
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from jobs.api.throttles import JobActionThrottle, refusal
from jobs.errors import JobError
from jobs.models import Job, JobEvent, JobState
from jobs.services import bulk
from processors import all_processors

logger = logging.getLogger(__name__)

S = JobState
# The page answers within this, whatever the broker does; each inspect call waits INSPECT_TIMEOUT.
PROBE_DEADLINE_SECONDS = 2.5
INSPECT_TIMEOUT_SECONDS = 1.0
# A probe's answer is reused this long: every open dashboard refreshes every REFRESH_SECONDS.
PROBE_REUSE_SECONDS = 2.0
REFRESH_SECONDS = 5
WINDOW_MINUTES = 60
WAITING = (S.CREATED, S.QUEUED, S.RETRYING, S.PROCESSING)

_probe_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ops-probe")
_inspect_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ops-inspect")


# --- the broker: workers and queues --------------------------------------------------------------

def _queue_names() -> list[str]:
    return sorted({route["queue"] for route in settings.CELERY_TASK_ROUTES.values()})


def _queue_depths() -> dict[str, int | None]:
    """Messages waiting in each queue (kombu's passive queue_declare: Redis and RabbitMQ both answer)."""
    depths: dict[str, int | None] = {}
    with current_app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=1)
        for queue in _queue_names():
            # A channel per queue: on AMQP a refused declare closes its channel.
            with connection.channel() as channel:
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except connection.channel_errors:
                    depths[queue] = 0  # no such queue yet (Redis drops an emptied one): nothing waits
    return depths


def _worker_rows(active: dict, stats: dict) -> list[dict]:
    rows = []
    for name in sorted(set(active) | set(stats)):
        pool = (stats.get(name) or {}).get("pool") or {}
        running = []
        for task in active.get(name) or []:
            args = task.get("args") or []
            job_id = str(args[0]) if args and task.get("name") == "jobs.run_job" else None
            started = task.get("time_start")
            running.append({
                "task": task.get("name", ""),
                "task_id": task.get("id", ""),
                "job_id": job_id,
                "started_at": datetime.fromtimestamp(started, tz=UTC).isoformat() if started else None,
            })
        rows.append({"name": name, "concurrency": pool.get("max-concurrency"), "running": running})
    return rows


def _probe() -> dict:
    depths = _queue_depths()  # raises at once if the broker refuses connections
    inspect = current_app.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS)
    active, stats = _inspect_pool.submit(inspect.active), _inspect_pool.submit(inspect.stats)
    workers = _worker_rows(active.result() or {}, stats.result() or {})
    return {"reachable": True, "error": "", "queues": depths, "workers": workers}


class BrokerProbe:
    """One probe in flight at a time; callers within PROBE_REUSE_SECONDS share its answer.
    A probe still running after the deadline is left to finish on its own thread (a hung
    broker holds that thread, not the page) and the next caller waits for it, not a new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._future = None
        self._answer: dict | None = None
        self._answered_at = 0.0

    def read(self) -> dict:
        with self._lock:
            if self._answer is not None and time.monotonic() - self._answered_at < PROBE_REUSE_SECONDS:
                return self._answer
            if self._future is None or self._future.done():
                self._future = _probe_pool.submit(_probe)
            future = self._future
        try:
            answer = future.result(timeout=PROBE_DEADLINE_SECONDS)
        except FutureTimeout:
            answer = _unreachable(f"the broker did not answer within {PROBE_DEADLINE_SECONDS:g} s")
        except Exception as exc:  # noqa: BLE001  (whatever the broker raised, the page says so)
            logger.warning("ops.broker_unreachable: %s: %s", type(exc).__name__, exc)
            answer = _unreachable(f"{type(exc).__name__}: {str(exc)[:200]}")
        with self._lock:
            self._answer, self._answered_at = answer, time.monotonic()
        return answer


def _unreachable(why: str) -> dict:
    return {"reachable": False, "error": why, "queues": dict.fromkeys(_queue_names()), "workers": []}


broker_probe = BrokerProbe()


# --- the database: the last hour -----------------------------------------------------------------

def _minutes(now: datetime) -> list[datetime]:
    end = now.replace(second=0, microsecond=0)
    return [end - timedelta(minutes=WINDOW_MINUTES - 1 - i) for i in range(WINDOW_MINUTES)]


def last_hour(*, now: datetime) -> dict:
    """Per minute of the last hour: jobs finished (COMPLETED; FAILED or DEAD) and the queue
    wait of the claims made (from the job's queued_at to its QUEUED -> PROCESSING event)."""
    minutes = _minutes(now)
    since = minutes[0]
    index = {m: i for i, m in enumerate(minutes)}
    completed, failed = [0] * WINDOW_MINUTES, [0] * WINDOW_MINUTES
    finished = (JobEvent.objects.filter(created_at__gte=since, to_state__in=(S.COMPLETED, S.FAILED, S.DEAD))
                .annotate(minute=TruncMinute("created_at")).values("minute", "to_state")
                .annotate(n=Count("id")).order_by())
    for row in finished:
        i = index.get(row["minute"])
        if i is not None:
            (completed if row["to_state"] == S.COMPLETED else failed)[i] += row["n"]
    # queued_at is the job's latest queue time: a claim it no longer precedes (the job was
    # queued again since) is left out rather than measured from the wrong start.
    waits = (JobEvent.objects.filter(created_at__gte=since, to_state=S.PROCESSING, from_state=S.QUEUED,
                                     job__queued_at__lte=F("created_at"))
             .annotate(minute=TruncMinute("created_at"),
                       wait=ExpressionWrapper(F("created_at") - F("job__queued_at"), output_field=DurationField()))
             .values("minute").annotate(avg=Avg("wait"), longest=Max("wait"), n=Count("id")).order_by())
    wait_avg: list[float | None] = [None] * WINDOW_MINUTES
    wait_max: list[float | None] = [None] * WINDOW_MINUTES
    claims = [0] * WINDOW_MINUTES
    for row in waits:
        i = index.get(row["minute"])
        if i is not None:
            wait_avg[i] = round(row["avg"].total_seconds(), 3)
            wait_max[i] = round(row["longest"].total_seconds(), 3)
            claims[i] = row["n"]
    return {"minutes": [m.isoformat() for m in minutes], "completed": completed, "failed": failed,
            "claims": claims, "wait_avg_seconds": wait_avg, "wait_max_seconds": wait_max}


def job_counts() -> dict:
    waiting = dict.fromkeys(WAITING, 0)
    for row in Job.objects.filter(state__in=WAITING).values("state").annotate(n=Count("id")).order_by():
        waiting[row["state"]] = row["n"]
    return {"by_state": waiting, "dead": Job.objects.filter(state=S.DEAD).count()}


def dashboard_snapshot() -> dict:
    """Everything the dashboard shows, as JSON-ready data."""
    now = timezone.now()
    return {"generated_at": now.isoformat(), "broker": broker_probe.read(), "jobs": job_counts(),
            "last_hour": last_hour(now=now)}


# --- charts: inline SVG, drawn on the server -----------------------------------------------------

CHART_W, CHART_H, PAD_L, PAD_B, PAD_T = 600, 170, 40, 22, 10


@dataclass
class Line:
    label: str
    css: str
    path: str
    points: list[dict]


def _ceiling(value: float) -> float:
    """A round axis maximum at or above value."""
    if value <= 0:
        return 1
    step = 10 ** len(str(int(value))) / 10
    for mult in (1, 2, 2.5, 5, 10):
        if value <= step * mult:
            return step * mult
    return value


def chart(*, title: str, unit: str, series: list[tuple[str, str, list]], minutes: list[str]) -> dict:
    """A line chart of per-minute series (None: no data that minute) as SVG coordinates."""
    top = _ceiling(max([v for _, _, values in series for v in values if v is not None] or [0]))
    inner_w, inner_h = CHART_W - PAD_L - 8, CHART_H - PAD_B - PAD_T
    step = inner_w / max(1, len(minutes) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return round(PAD_L + i * step, 1), round(PAD_T + inner_h * (1 - v / top), 1)

    lines = []
    for label, css, values in series:
        points, segments, pen_down = [], [], False
        for i, v in enumerate(values):
            if v is None:
                pen_down = False
                continue
            x, y = xy(i, v)
            segments.append(f"{'L' if pen_down else 'M'}{x},{y}")
            pen_down = True
            if v:
                points.append({"x": x, "y": y, "value": v, "minute": minutes[i][11:16]})
        lines.append(Line(label=label, css=css, path=" ".join(segments), points=points))
    ticks = [{"y": round(PAD_T + inner_h * (1 - f), 1), "label": f"{top * f:g}"} for f in (0, 0.5, 1)]
    last = len(minutes) - 1
    xticks = [{"x": xy(last - back, 0)[0], "label": f"-{back} min" if back else "now",
               "anchor": "middle" if back else "end"} for back in (45, 30, 15, 0) if back <= last]
    has_data = any(v for _, _, values in series for v in values)
    return {"title": title, "unit": unit, "lines": lines, "ticks": ticks, "xticks": xticks, "width": CHART_W,
            "height": CHART_H, "left": PAD_L, "bottom": CHART_H - PAD_B, "right": CHART_W - 8, "has_data": has_data}


def charts(hour: dict) -> list[dict]:
    return [
        chart(title="Throughput: jobs finished per minute", unit="jobs", minutes=hour["minutes"],
              series=[("completed", "ok", hour["completed"]), ("failed or dead", "bad", hour["failed"])]),
        chart(title="Queue wait: QUEUED to PROCESSING, per minute", unit="s", minutes=hour["minutes"],
              series=[("average", "avg", hour["wait_avg_seconds"]), ("longest", "max", hour["wait_max_seconds"])]),
    ]


# --- views ---------------------------------------------------------------------------------------

def _require_staff(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise PermissionDenied("the dashboard is for staff")


def _context(snapshot: dict) -> dict:
    broker = snapshot["broker"]
    return {"snap": snapshot, "broker": broker, "charts": charts(snapshot["last_hour"]),
            "busy": sum(len(w["running"]) for w in broker["workers"]),
            "refresh_seconds": REFRESH_SECONDS}


@never_cache
@login_required
def ops_dashboard(request: HttpRequest) -> HttpResponse:
    _require_staff(request)
    context = _context(dashboard_snapshot())
    if request.GET.get("fragment"):
        return render(request, "ops/_dashboard_body.html", context)
    context |= {"job_types": [p.job_type for p in all_processors()], "actions": bulk.ACTIONS}
    return render(request, "ops/dashboard.html", context)


@never_cache
@login_required
def ops_data(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        return JsonResponse({"error": {"code": "permission_denied", "message": "the dashboard is for staff",
                                       "details": {}}}, status=403)
    return JsonResponse(dashboard_snapshot())


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def ops_bulk(request: HttpRequest) -> HttpResponse:
    """GET: what the action would do, and a form to confirm it. POST with confirm=yes: do it."""
    _require_staff(request)
    data = request.POST if request.method == "POST" else request.GET
    try:
        flt = bulk.bulk_filter_clean(action=data.get("action", ""), job_type=data.get("job_type", ""),
                                     reason=data.get("reason", ""), username=data.get("username", ""))
    except JobError as exc:
        return render(request, "error.html", {"status": exc.status, "message": exc.message,
                                              "back": reverse("ops-dashboard")}, status=exc.status)
    if request.method == "POST" and data.get("confirm") == "yes":
        wait = refusal(request, JobActionThrottle)
        if wait is not None:
            response = render(request, "error.html", {"status": 429, "back": reverse("ops-dashboard"),
                                                      "message": f"Too many requests; try again in {wait} seconds."},
                              status=429)
            response["Retry-After"] = str(wait)
            return response
        result = bulk.bulk_run(flt=flt, staff=request.user)
        text = f"Bulk action done ({result.description}): {len(result.moved)} moved"
        if result.refused:
            text += f", {result.refused} refused (changed meanwhile)"
        if result.remaining:
            text += f", {result.remaining} more match: run it again"
        messages.success(request, text + ".")
        return redirect("ops-dashboard")
    preview = bulk.bulk_preview(flt=flt)
    return render(request, "ops/bulk_confirm.html", {"preview": preview, "flt": flt, "limit": bulk.BULK_MAX_JOBS,
                                                     "title": bulk.ACTIONS[flt.action]},
                  status=200 if request.method == "GET" else 400)
