"""Lists that do not grow with history: on a database seeded with 20,000 jobs (about 100,000
events, 1,000 dead letters), every list endpoint reads through an index, never counts every
job, and runs as many queries on a deep page or a filtered one as on the first.

Each captured query on the big tables is EXPLAINed as it ran (its parameters inlined): a
sequential scan of jobs, events, dead letters or task results fails the test, and so does a
count(*) that is not bounded by a LIMIT. bench/growth.py measures the same paths at a million.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import selectors, sweeper
from jobs.models import Job
from tests.support.api import token_client

pytestmark = pytest.mark.django_db
JOBS = 20_000
BIG_TABLES = ("jobs_job", "jobs_jobevent", "jobs_deadletter", "django_celery_results_taskresult")
STATES = ["COMPLETED"] * 90 + ["FAILED"] * 4 + ["CANCELLED"] * 1 + ["DEAD"] * 5


def _copy(cursor, table: str, columns: list[str], rows: list[tuple]) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker):
    """20,000 finished jobs over 50 users, a tenth of them the user `big`'s, committed for the
    module and removed after it. COPY, as bench/growth.py seeds, then ANALYZE: the planner
    sees the table as it is."""
    with django_db_blocker.unblock():
        User = get_user_model()
        big = User.objects.create(username="growth-big", password=make_password(None))
        others = User.objects.bulk_create([User(username=f"growth-{i}", password=make_password(None))
                                           for i in range(49)])
        staff = User.objects.create(username="growth-staff", is_staff=True, is_superuser=True,
                                    password=make_password(None))
        now = timezone.now()
        jobs, events, letters, results = [], [], [], []
        for i in range(JOBS):
            job_id, task_id = uuid.uuid4(), str(uuid.uuid4())
            owner = big.pk if i % 10 == 0 else others[i % len(others)].pk
            state = STATES[i % len(STATES)]
            created = now - timedelta(days=365) * (1 - i / JOBS)
            finished = created + timedelta(seconds=9)
            name = f"ledger-{i:06d}.csv"
            jobs.append((job_id, owner, ["CSV_ROW_COUNT", "SHA256"][i % 2], "{}", "1", "job-inputs",
                         f"uploads/{owner}/{uuid.uuid4()}/{name}", name, 100, "", state, 1, 5, 0, 100, 100, False,
                         "", "", None, "[]", task_id, json.dumps([task_id]), "", 1, 4, "", created, finished, created,
                         created, finished))
            for n, (frm, to) in enumerate([("", "CREATED"), ("CREATED", "QUEUED"), ("QUEUED", "PROCESSING"),
                                           ("PROCESSING", state), (state, state)][:5 if i % 2 else 4]):
                events.append((job_id, frm, to, "", 1, "bench", created + timedelta(seconds=n)))
            results.append((task_id, "SUCCESS", "application/json", "utf-8", "null", finished, created,
                            "jobs.run_job"))
            if state == "DEAD":
                letters.append((job_id, "attempts exhausted", "", 5, finished, 0))
        with connection.cursor() as cursor:
            raw = cursor.connection.cursor()
            _copy(raw, "jobs_job", [
                "id", "owner_id", "job_type", "params", "processor_version", "input_bucket", "input_key",
                "input_name", "input_size", "input_etag", "state", "attempts", "max_attempts", "worker_deaths",
                "progress_bytes", "progress_total", "cancel_requested", "error_code", "error_message", "result",
                "result_keys", "celery_task_id", "task_ids", "worker", "publish_count", "version",
                "request_fingerprint", "created_at", "updated_at", "queued_at", "started_at", "finished_at",
                *_other_columns(),
            ], [row + _other_values() for row in jobs])
            _copy(raw, "jobs_jobevent", ["job_id", "from_state", "to_state", "reason", "attempt", "actor",
                                         "created_at"], events)
            _copy(raw, "django_celery_results_taskresult", [
                "task_id", "status", "content_type", "content_encoding", "result", "date_done", "date_created",
                "task_name"], results)
            _copy(raw, "jobs_deadletter", ["job_id", "reason", "traceback", "attempts", "died_at", "replay_count"],
                  letters)
            for table in BIG_TABLES:
                cursor.execute(f"ANALYZE {table}")
        first_job = Job.objects.filter(owner=big).order_by("created_at").first()
    yield {"big": big, "staff": staff, "first_job": first_job}
    with django_db_blocker.unblock():
        users = [big.pk, staff.pk, *(u.pk for u in others)]
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM django_celery_results_taskresult WHERE task_id IN "
                           "(SELECT celery_task_id FROM jobs_job WHERE owner_id = ANY(%s))", [users])
            cursor.execute("DELETE FROM jobs_jobevent WHERE job_id IN "
                           "(SELECT id FROM jobs_job WHERE owner_id = ANY(%s))", [users])
            cursor.execute("DELETE FROM jobs_deadletter WHERE job_id IN "
                           "(SELECT id FROM jobs_job WHERE owner_id = ANY(%s))", [users])
            cursor.execute("DELETE FROM jobs_job WHERE owner_id = ANY(%s)", [users])
        User.objects.filter(pk__in=users).delete()


def _fields_seeded_here() -> set[str]:
    return {"id", "owner_id", "job_type", "params", "processor_version", "input_bucket", "input_key", "input_name",
            "input_size", "input_etag", "state", "attempts", "max_attempts", "worker_deaths", "progress_bytes",
            "progress_total", "cancel_requested", "error_code", "error_message", "result", "result_keys",
            "celery_task_id", "task_ids", "worker", "publish_count", "version", "request_fingerprint", "created_at",
            "updated_at", "queued_at", "started_at", "finished_at"}


def _other_fields():
    # Columns other apps add to Job get their field's default (Django's documented _meta API).
    return [f for f in Job._meta.concrete_fields if f.column not in _fields_seeded_here()]


def _other_columns() -> list[str]:
    return [f.column for f in _other_fields()]


def _other_values() -> tuple:
    values = []
    for field in _other_fields():
        default = field.get_default()
        values.append(json.dumps(default) if isinstance(default, dict | list) else default)
    return tuple(values)


def explained(queries: list[dict]) -> list[tuple[str, str]]:
    """(sql, plan) of each captured SELECT that reads one of the big tables.

    With enable_seqscan off: at 20,000 rows a sequential scan is still the planner's cheapest
    choice for some queries, as it is not at a million. Off, it scans a table whole only when
    no index can serve the query at all, which is what this test is after."""
    out = []
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            for query in queries:
                sql = query["sql"]
                if not sql.lstrip().upper().startswith("SELECT") or not any(f'"{t}"' in sql for t in BIG_TABLES):
                    continue
                cursor.execute("EXPLAIN " + sql)
                out.append((sql, "\n".join(row[0] for row in cursor.fetchall())))
        finally:
            cursor.execute("RESET enable_seqscan")
    return out


def assert_indexed(queries: list[dict]) -> None:
    plans = explained(queries)
    assert plans, "no query on the big tables was captured"
    for sql, plan in plans:
        for table in BIG_TABLES:
            assert f"Seq Scan on {table}" not in plan, f"{sql}\n{plan}"
        counts = re.findall(r"COUNT\(\*\)", sql, flags=re.IGNORECASE)
        assert not counts or "LIMIT" in sql.upper(), f"an unbounded count: {sql}"


def captured(fn) -> list[dict]:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return ctx.captured_queries


def test_the_job_list_reads_an_index_on_every_page_and_filter_with_the_same_queries(seeded):
    api = token_client(seeded["big"])
    first = api.get("/api/v1/jobs/")
    assert first.status_code == 200 and len(first.json()["results"]) == 25
    pages = {"first": "/api/v1/jobs/"}
    url = first.json()["next"]
    for _ in range(40):  # 1,000 jobs down the user's 2,000
        url = api.get(url).json()["next"]
    pages["deep"] = url
    after = (timezone.now() - timedelta(days=30)).isoformat()
    pages |= {"state": "/api/v1/jobs/?state=FAILED", "type": "/api/v1/jobs/?job_type=SHA256",
              "created": f"/api/v1/jobs/?created_after={after.replace('+', '%2B')}",
              "empty filter": "/api/v1/jobs/?state=QUEUED"}
    counts = {}
    for name, path in pages.items():
        queries = captured(lambda path=path: api.get(path))
        assert_indexed(queries)
        counts[name] = len(queries)
    assert len(set(counts.values())) == 1, counts


def test_the_dead_letter_list_reads_an_index_and_counts_nothing(seeded):
    api = token_client(seeded["staff"])
    for path in ("/api/v1/dead-letters/", "/api/v1/dead-letters/?pending=true"):
        queries = captured(lambda path=path: api.get(path))
        assert_indexed(queries)
        assert not any("COUNT(" in q["sql"].upper() for q in queries)


def test_a_job_detail_reads_its_events_through_the_job_index(seeded):
    api = token_client(seeded["big"])
    job = seeded["first_job"]
    queries = captured(lambda: api.get(f"/api/v1/jobs/{job.id}/"))
    assert_indexed(queries)


@pytest.mark.parametrize("query", [{}, {"q": "ledger-0001"}, {"q": "growth-big"}, {"state__exact": "FAILED"},
                                   {"job_type": "SHA256"}, {"retry": "helps"}, {"created_at__gte": "2020-01-01"}])
def test_the_admin_job_list_uses_indexes_and_never_counts_every_job(seeded, query):
    client = Client()
    client.force_login(seeded["staff"])
    queries = captured(lambda: client.get("/admin/jobs/job/", query))
    assert_indexed(queries)


def test_the_admin_job_list_finds_a_job_by_id_prefix_through_the_primary_key(seeded):
    client = Client()
    client.force_login(seeded["staff"])
    job = seeded["first_job"]
    queries = captured(lambda: client.get("/admin/jobs/job/", {"q": str(job.id)[:8]}))
    assert_indexed(queries)
    assert str(job.id) in client.get("/admin/jobs/job/", {"q": str(job.id)[:8]}).content.decode()


def test_the_admin_estimates_a_long_list_instead_of_counting_it(seeded):
    client = Client()
    client.force_login(seeded["staff"])
    response = client.get("/admin/jobs/job/")
    changelist = response.context["cl"]
    assert changelist.full_result_count is None
    # Past 10,000 rows the count is the planner's estimate: near the truth, never a count(*).
    assert 0.5 * JOBS <= changelist.result_count <= 2 * JOBS


@pytest.mark.parametrize("query", [{}, {"q": "attempts"}, {"q": "growth-big"}, {"job__job_type": "SHA256"}])
def test_the_admin_dead_letter_list_uses_indexes(seeded, query):
    client = Client()
    client.force_login(seeded["staff"])
    queries = captured(lambda: client.get("/admin/jobs/deadletter/", query))
    assert_indexed(queries)


def test_the_sweeper_cycle_reads_indexes_only(seeded):
    assert_indexed(captured(sweeper.sweep))


def test_the_live_pages_initial_render_and_catch_up_read_indexes(seeded):
    client = Client()
    client.force_login(seeded["big"])
    job = seeded["first_job"]
    for path in ("/", f"/jobs/{job.id}/", "/?state=FAILED"):
        queries = captured(lambda path=path: client.get(path))
        assert_indexed(queries)
    assert_indexed(captured(lambda: selectors.job_list_live(user=seeded["big"])))


def test_the_prune_batch_reads_indexes(seeded):
    cutoff = timezone.now() - timedelta(days=400)  # nothing so old: the query is what is measured
    queries = captured(lambda: list(selectors.jobs_finished_before(cutoff=cutoff)[:1000]))
    assert_indexed(queries)
    keys = list(Job.objects.filter(owner=seeded["big"]).values_list("input_key", flat=True)[:100])
    assert_indexed(captured(lambda: list(Job.objects.filter(input_key__in=keys).order_by().values_list("pk"))))
