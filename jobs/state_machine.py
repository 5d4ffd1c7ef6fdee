"""The job state machine: the allowed moves, and the one function that makes them.

Every state change in the platform goes through `job_transition`. It checks the move
against ALLOWED and the caller's expectations and writes the change and the JobEvent in
one statement: either one that locks the row only in a state the move is allowed from
(when the move needs nothing else from the row), or, after reading the row, one that
applies only if the row is still as it was read (compare-and-set). It sends the live
notification only after commit. A late or duplicate message therefore cannot move a job
backwards or complete it twice. docs/states.md has the details.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .models import Job, JobEvent, JobState
from .rows import from_row

logger = logging.getLogger(__name__)

S = JobState
ALLOWED: dict[str, frozenset[str]] = {
    S.CREATED: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.PROCESSING, S.CANCELLED}),
    # PROCESSING -> QUEUED: the sweeper found its lease expired (the worker died).
    S.PROCESSING: frozenset({S.COMPLETED, S.RETRYING, S.FAILED, S.DEAD, S.CANCELLED, S.QUEUED}),
    # RETRYING -> QUEUED: the sweeper found the retry overdue (its message was lost).
    S.RETRYING: frozenset({S.PROCESSING, S.CANCELLED, S.QUEUED, S.DEAD}),
    S.FAILED: frozenset({S.QUEUED}),  # only by an explicit operator retry
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.DEAD: frozenset({S.QUEUED}),  # replay
}


# Reads and compare-and-sets before a transition gives up on a row that keeps changing
# (progress writes change updated_at too; each lost race costs two statements).
CAS_ATTEMPTS = 20


class TransitionRefused(Exception):
    """The job is not in a state from which this move is allowed (or was changed meanwhile)."""

    def __init__(self, message: str, *, job: Job | None = None):
        super().__init__(message)
        self.job = job


class Add:
    """A change that adds to the column's current value (attempts + 1), computed where the
    row is: in the statement when the transition needs no read, else on the row read."""

    __slots__ = ("amount",)

    def __init__(self, amount: int) -> None:
        self.amount = amount


def is_allowed(from_state: str, to_state: str) -> bool:
    return to_state in ALLOWED.get(from_state, frozenset())


class _JobRows:
    """Hand-written SQL for a transition: a read of the row, then the compare-and-set
    update and the event insert as one statement (a data-modifying WITH).

    Every job makes at least three transitions, and through the ORM each cost ~3.6 ms of
    CPU (query compilation and model building), ten times the SQL itself: more than the
    rest of a tiny job's run. These statements do the same work with the same field
    conversions (get_db_prep_save on the way in, from_db_value on the way out), so the
    ORM and this path read and write identical rows. bench/throughput.py measures it.
    """

    def __init__(self) -> None:
        self._select_sql = None

    def _prepare(self) -> None:
        qn = connection.ops.quote_name
        self.fields = list(Job._meta.concrete_fields)
        self.by_name = {f.name: f for f in self.fields} | {f.attname: f for f in self.fields}
        self.job_table, self.pk_column = qn(Job._meta.db_table), qn(Job._meta.pk.column)
        # Identifiers come from the model's meta, quoted; every value is a bound parameter.
        columns = ", ".join(qn(f.column) for f in self.fields)
        self._select_sql = f"SELECT {columns} FROM {self.job_table} WHERE {self.pk_column} = %s"  # noqa: S608
        self.cas_sql = (f" WHERE {self.pk_column} = %s AND {qn(Job._meta.get_field('state').column)} = %s"
                        f" AND {qn(Job._meta.get_field('updated_at').column)} = %s RETURNING {self.pk_column}")
        event_fields = [JobEvent._meta.get_field(name) for name in
                        ("job", "from_state", "to_state", "reason", "attempt", "actor", "created_at")]
        self.event_attnames = [f.attname for f in event_fields]
        table, pk = qn(JobEvent._meta.db_table), qn(JobEvent._meta.pk.column)
        columns = ", ".join(qn(f.column) for f in event_fields)
        self.event_table, self.event_pk, self.event_columns = table, pk, columns
        # The event of a compare-and-set: inserted only if the update matched (job_id from it).
        self.cas_event_sql = (f"INSERT INTO {table} ({columns}) SELECT {self.pk_column}, "  # noqa: S608
                              f"{', '.join(['%s'] * (len(event_fields) - 1))} FROM moved RETURNING {pk}")
        job_columns, job_values = ", ".join(qn(f.column) for f in self.fields), ", ".join(["%s"] * len(self.fields))
        self.insert_sql = f"INSERT INTO {self.job_table} ({job_columns}) VALUES ({job_values})"  # noqa: S608

    def read(self, job_id) -> Job:
        if self._select_sql is None:
            self._prepare()
        pk = Job._meta.pk.get_db_prep_value(job_id, connection)  # a malformed id raises ValidationError
        with connection.cursor() as cursor:
            cursor.execute(self._select_sql, [pk])
            row = cursor.fetchone()
        if row is None:
            raise Job.DoesNotExist(f"no job {job_id}")
        return from_row(Job, self.fields, row)

    def compare_and_set(self, job: Job, names: set[str], *, was_state: str, was_updated_at,
                        **values) -> JobEvent | None:
        """Updates the row, only if it is still in the state and version (updated_at) it
        was read in, and inserts the event only if it did, in one statement: atomic by
        itself. Returns the event, or None if the row changed since it was read."""
        qn = connection.ops.quote_name
        fields = [self.by_name[name] for name in sorted(names)]
        assignments = ", ".join(f"{qn(f.column)} = %s" for f in fields)
        sql = (f"WITH moved AS (UPDATE {self.job_table} SET {assignments}{self.cas_sql}) "  # noqa: S608
               f"{self.cas_event_sql}")
        params = [f.get_db_prep_save(getattr(job, f.attname), connection) for f in fields]
        updated_at = Job._meta.get_field("updated_at").get_db_prep_value(was_updated_at, connection)
        # The event's job_id comes from the updated row, so it is not among the parameters.
        return self._write_event(sql, [*params, job.pk, was_state, updated_at], self.event_attnames[1:], values)

    def move_unread(self, job_id, *, sources: list[str], claim_token, values: dict[str, Any],
                    event: dict[str, Any]) -> tuple[Job, JobEvent] | None:
        """The whole transition in one statement, without reading the row first: it locks
        the row only if it is in one of `sources` (and held by `claim_token`, if given),
        updates it, inserts the event (from the state it locked, with the attempt it left)
        and returns both. None if the row is not in such a state (or does not exist)."""
        if self._select_sql is None:
            self._prepare()
        qn = connection.ops.quote_name
        pk, state = self.pk_column, qn(Job._meta.get_field("state").column)
        attempts = qn(Job._meta.get_field("attempts").column)
        assignments, params = [], []
        for name, value in values.items():
            field = self.by_name[name]
            if isinstance(value, Add):
                assignments.append(f"{qn(field.column)} = j.{qn(field.column)} + %s")
                params.append(value.amount)
            else:
                assignments.append(f"{qn(field.column)} = %s")
                params.append(field.get_db_prep_save(value, connection))
        held = ""
        lock_params = [Job._meta.pk.get_db_prep_value(job_id, connection), list(sources)]
        if claim_token is not None:
            held = f" AND {qn(Job._meta.get_field('claim_token').column)} = %s"
            lock_params.append(Job._meta.get_field("claim_token").get_db_prep_value(claim_token, connection))
        columns = ", ".join(f"j.{qn(f.column)}" for f in self.fields)
        event_table, event_pk, event_columns = self.event_table, self.event_pk, self.event_columns
        # Identifiers come from the models' meta, quoted; every value is a bound parameter.
        sql = (f"WITH old AS (SELECT {pk}, {state} FROM {self.job_table} "  # noqa: S608
               f"WHERE {pk} = %s AND {state} = ANY(%s){held} FOR UPDATE), "
               f"moved AS (UPDATE {self.job_table} AS j SET {', '.join(assignments)} FROM old "
               f"WHERE j.{pk} = old.{pk} RETURNING old.{state} AS was, {columns}), "
               f"event AS (INSERT INTO {event_table} ({event_columns}) "
               f"SELECT {pk}, was, %s, %s, {attempts}, %s, %s FROM moved RETURNING {event_pk}) "
               f"SELECT event.{event_pk}, moved.* FROM moved, event")
        created_at = JobEvent._meta.get_field("created_at").get_db_prep_value(event["created_at"], connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*lock_params, *params, event["to_state"], event["reason"], event["actor"],
                                 created_at])
            row = cursor.fetchone()
        if row is None:
            return None
        event_id, was = row[0], row[1]
        job = from_row(Job, self.fields, row[2:])
        written = JobEvent(job_id=job.pk, from_state=was, attempt=job.attempts, **event)
        written.pk, written._state.adding = event_id, False
        return job, written

    def insert_with_events(self, job: Job, events: list[dict[str, Any]]) -> list[JobEvent]:
        """Inserts a new job row and its first events in one statement, with the values the
        job holds (the caller sets created_at and updated_at, which Model.save's pre_save
        would). The events' foreign key is checked at the end of the statement."""
        if self._select_sql is None:
            self._prepare()
        params = [f.get_db_prep_save(getattr(job, f.attname), connection) for f in self.fields]
        written = [JobEvent(**values) for values in events]
        rows = ", ".join([f"({', '.join(['%s'] * len(self.event_attnames))})"] * len(written))
        for event in written:
            params += [getattr(event, name) for name in self.event_attnames]
        sql = (f"WITH created AS ({self.insert_sql}) INSERT INTO {self.event_table} ({self.event_columns}) "  # noqa: S608
               f"VALUES {rows} RETURNING {self.event_pk}")
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            ids = sorted(row[0] for row in cursor.fetchall())  # a sequence: in the order given
        for event, pk in zip(written, ids, strict=True):
            event.pk, event._state.adding = pk, False
        job._state.adding, job._state.db = False, connection.alias
        return written

    def _write_event(self, sql: str, params: list, attnames: list[str], values: dict) -> JobEvent | None:
        """Runs a statement whose main part inserts one JobEvent (its `attnames` values
        follow `params`) and returns that event, or None if the statement inserted none."""
        event = JobEvent(**values)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, *(getattr(event, name) for name in attnames)])
            row = cursor.fetchone()
        if row is None:
            return None
        event.pk = row[0]
        event._state.adding = False
        return event


_rows = _JobRows()


def insert_created(job: Job, *, actor: str) -> JobEvent:
    """Inserts a new CREATED job with its CREATED event, in one statement (atomic by itself;
    inside a caller's transaction, under a savepoint so that a refused insert, such as a
    reused Idempotency-Key, leaves that transaction usable). Returns the event."""
    return _insert(job, actor=actor)[0]


def insert_queued(job: Job, *, actor: str, enqueuer: str, changes: dict[str, Any]) -> Job:
    """Inserts a new job already QUEUED, with its CREATED and QUEUED events, in one statement:
    the creation and the enqueue a committed CREATED row would get at once (`job_create`
    outside a transaction, where its on-commit enqueue would follow straight away). The job
    moves CREATED -> QUEUED as ALLOWED says; nobody else can see the row before both are
    written. Returns the job, carrying the QUEUED event as `transition_event` and the
    CREATED one as `created_event`; the QUEUED notification is sent after commit."""
    created, queued = _insert(job, actor=actor, then=(S.QUEUED, enqueuer, changes))
    job.created_event = created
    return _moved(job, queued)


def _insert(job: Job, *, actor: str, then: tuple[str, str, dict[str, Any]] | None = None) -> list[JobEvent]:
    if job.state != S.CREATED:
        raise TransitionRefused(f"a new job starts CREATED, not {job.state}", job=job)
    job.created_at = job.updated_at = now = timezone.now()
    events = [{"job_id": job.id, "from_state": "", "to_state": S.CREATED, "reason": "created",
               "attempt": job.attempts, "actor": actor[:255], "created_at": now}]
    if then is not None:
        to, by, changes = then
        if not is_allowed(S.CREATED, to):
            raise TransitionRefused(f"a new job cannot move from CREATED to {to}", job=job)
        for name, value in _move_values(to, now, changes).items():
            setattr(job, name, value)
        events.append({**events[0], "from_state": S.CREATED, "to_state": to, "reason": "created", "actor": by[:255]})

    def insert() -> list[JobEvent]:
        return _rows.insert_with_events(job, events)

    if connection.in_atomic_block:
        with transaction.atomic():
            return insert()
    return insert()


def _move_values(to: str, now, changes: dict[str, Any] | None) -> dict[str, Any]:
    """Every column a move to `to` sets: the state, its time, the caller's changes, and
    what the target state implies (a queue time; a finished job holds no lease)."""
    values = {"state": to, "updated_at": now, **(changes or {})}
    if to == S.QUEUED:
        values["queued_at"] = now
    if to in (S.COMPLETED, S.FAILED, S.CANCELLED, S.DEAD):
        values |= {"finished_at": now, "lease_expires_at": None, "claim_token": None}
    return values


def _moved(job: Job, event: JobEvent) -> Job:
    job.transition_event = event
    logger.info("job.transition job_id=%s from=%s to=%s attempt=%s actor=%s reason=%s",
                job.id, event.from_state, event.to_state, job.attempts, event.actor, event.reason[:200])

    from .notify import job_changed

    transaction.on_commit(lambda: job_changed(job, event=event))
    return job


def job_transition(
    *,
    job_id: uuid.UUID | str,
    to: str,
    expected: Iterable[str] | str | None = None,
    reason: str = "",
    actor: str = "system",
    claim_token: uuid.UUID | None = None,
    changes: dict[str, Any] | Callable[[Job], dict[str, Any]] | None = None,
    current: Job | None = None,
) -> Job:
    """Moves one job to `to`, or raises TransitionRefused and changes nothing.

    expected: the states the caller believes the job is in (compare-and-set).
    claim_token: for moves out of PROCESSING by a worker, the token of its claim.
    changes: other fields to set in the same update, or a function of the row as read that
    returns them (for values derived from the row, such as an appended list).
    current: the caller's copy of the row, as it last wrote or read it (a job it just
    created or claimed). The first compare-and-set is tried against it instead of a fresh
    read; if the row changed since, that statement matches nothing and the row is read as
    usual, so a stale copy costs one statement and never a wrong move. It is not modified.
    The returned job carries the JobEvent written, as `transition_event`.
    """
    if isinstance(expected, str):
        expected = {expected}
    # Without a function of the row, a copy of it, or a need to know its state beyond the
    # expected ones, the move needs nothing from the row: one statement makes it (the
    # worker's claim). If that finds the row elsewhere, the read below says why.
    if current is None and not callable(changes) and expected is not None:
        sources = sorted(state for state in expected if is_allowed(state, to))
        now = timezone.now()
        event = {"to_state": to, "reason": reason[:4000], "actor": actor[:255], "created_at": now}
        moved = sources and _rows.move_unread(job_id, sources=sources, claim_token=claim_token,
                                              values=_move_values(to, now, changes), event=event)
        if moved:
            return _moved(*moved)
    # Compare-and-set: read the row, check the move, then update it only if it is still
    # in the state and version it was read in. Racing workers, the sweeper and users are
    # serialised by PostgreSQL's row lock inside that one statement: whoever comes second
    # matches nothing, reads the row again, and is refused by the state the first left.
    for _ in range(CAS_ATTEMPTS):
        if current is not None and str(current.pk) == str(job_id):
            job, current = copy.copy(current), None
        else:
            job = _rows.read(job_id)
        from_state, was_updated_at = job.state, job.updated_at
        if expected is not None and from_state not in set(expected):
            raise TransitionRefused(f"job {job.id} is {from_state}, expected {'/'.join(sorted(expected))}", job=job)
        if not is_allowed(from_state, to):
            raise TransitionRefused(f"job {job.id} cannot move from {from_state} to {to}", job=job)
        if claim_token is not None and job.claim_token != claim_token:
            raise TransitionRefused(f"job {job.id} is no longer held by this worker", job=job)

        now = timezone.now()
        job.state = to
        values = _move_values(to, now, changes(job) if callable(changes) else changes)
        for name, value in values.items():
            setattr(job, name, getattr(job, name) + value.amount if isinstance(value, Add) else value)
        event = _rows.compare_and_set(job, set(values), was_state=from_state, was_updated_at=was_updated_at,
                                      job_id=job.id, from_state=from_state, to_state=to, reason=reason[:4000],
                                      attempt=job.attempts, actor=actor[:255], created_at=now)
        if event is None:
            continue  # the row changed between the read and the write: read it again
        return _moved(job, event)
    raise TransitionRefused(f"job {job_id} kept changing under {CAS_ATTEMPTS} attempts to move it to {to}", job=job)
