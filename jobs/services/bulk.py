"""Operators' bulk actions: replay the dead letters that match a filter, retry the FAILED jobs
of a type, cancel a user's waiting jobs.

Each job moves through the service that the single action uses (and so through
job_transition, with its JobEvent), one short transaction per job, in batches of ids read
by primary key, with the staff user as actor. Every moved job gets an admin LogEntry (its
history in the admin) and the whole action one summary log line. One call moves at most
BULK_MAX_JOBS jobs and says how many still match, so a request never runs for minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from processors import all_processors

from ..errors import JobError
from ..models import DeadLetter, Job, JobState
from . import actions

logger = logging.getLogger(__name__)

S = JobState
BATCH_SIZE = 200
BULK_MAX_JOBS = 2000
# "Waiting": not started yet, so a cancel takes effect at once.
WAITING_STATES = (S.CREATED, S.QUEUED, S.RETRYING)
ACTIONS = {
    "replay_dead": "Replay dead letters",
    "retry_failed": "Retry FAILED jobs",
    "cancel_waiting": "Cancel waiting jobs",
}


@dataclass(frozen=True)
class BulkFilter:
    """What a bulk action applies to. Which fields count depends on the action: replay_dead
    takes job_type, reason (a substring) and username; retry_failed job_type; cancel_waiting
    username."""

    action: str
    job_type: str = ""
    reason: str = ""
    username: str = ""


@dataclass(frozen=True)
class BulkPreview:
    filter: BulkFilter
    description: str
    matching: int  # rows the filter selects
    eligible: int  # of those, the ones the action can move
    sample: list[Job]


@dataclass
class BulkResult:
    filter: BulkFilter
    description: str
    moved: list[str] = field(default_factory=list)
    refused: int = 0  # changed meanwhile, or refused by the single action's own rules
    remaining: int = 0  # still eligible after this call's BULK_MAX_JOBS


def bulk_filter_clean(*, action: str, job_type: str = "", reason: str = "", username: str = "") -> BulkFilter:
    """The filter, checked: a known action, a known job type, an existing user. JobError (400) otherwise."""
    if action not in ACTIONS:
        raise JobError(f"unknown bulk action {action!r}; one of {', '.join(ACTIONS)}", code="invalid_action")
    job_type, reason, username = job_type.strip(), reason.strip(), username.strip()
    if any("\x00" in value for value in (job_type, reason, username)):
        # PostgreSQL cannot compare text with a NUL in it: refuse it here rather than fail there.
        raise JobError("filters cannot contain NUL characters", code="invalid_filter")
    types = {p.job_type for p in all_processors()}
    if job_type and job_type not in types:
        raise JobError(f"unknown job type {job_type!r}", code="unknown_job_type",
                       details={"job_type": f"one of {', '.join(sorted(types))}"})
    if action == "retry_failed" and not job_type:
        raise JobError("choose the job type whose FAILED jobs to retry", code="invalid_filter",
                       details={"job_type": "required"})
    if action == "cancel_waiting" and not username:
        raise JobError("name the user whose waiting jobs to cancel", code="invalid_filter",
                       details={"username": "required"})
    if len(reason) > 200:
        raise JobError("the reason filter is at most 200 characters", code="invalid_filter",
                       details={"reason": "at most 200 characters"})
    if username and not get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).exists():
        raise JobError(f"no user named {username!r}", code="invalid_filter", details={"username": "no such user"})
    return BulkFilter(action=action, job_type=job_type, reason=reason, username=username)


def _owner_q(username: str, prefix: str = "") -> Q:
    return Q(**{f"{prefix}owner__{get_user_model().USERNAME_FIELD}": username}) if username else Q()


def _matching(flt: BulkFilter) -> QuerySet[Job]:
    if flt.action == "replay_dead":
        letters = DeadLetter.objects.filter(job__state=S.DEAD)
        if flt.job_type:
            letters = letters.filter(job__job_type=flt.job_type)
        if flt.reason:
            letters = letters.filter(reason__icontains=flt.reason)
        letters = letters.filter(_owner_q(flt.username, "job__"))
        return Job.objects.filter(pk__in=letters.values("job_id"))
    if flt.action == "retry_failed":
        return Job.objects.filter(state=S.FAILED, job_type=flt.job_type)
    return Job.objects.filter(_owner_q(flt.username), state__in=WAITING_STATES)


def _eligible(flt: BulkFilter) -> QuerySet[Job]:
    qs = _matching(flt)
    if flt.action != "retry_failed":
        return qs
    # The database's copy of actions.job_retry_refusal, for counting: a cause a retry may
    # cure, or a processor that changed since the job ran.
    permanent = set().union(*actions.PERMANENT_FAILURES.values())
    current = {p.job_type: p.version for p in all_processors()}.get(flt.job_type, "")
    return qs.filter(~Q(error_code__in=permanent) | ~Q(processor_version=current))


def _describe(flt: BulkFilter) -> str:
    if flt.action == "replay_dead":
        parts = [f"type {flt.job_type}" if flt.job_type else "",
                 f"reason containing {flt.reason!r}" if flt.reason else "",
                 f"owned by {flt.username}" if flt.username else ""]
        which = ", ".join(p for p in parts if p)
        return f"replay every dead letter still DEAD{' with ' + which if which else ''}"
    if flt.action == "retry_failed":
        return f"retry every FAILED {flt.job_type} job whose cause a retry may cure"
    return f"cancel every waiting ({', '.join(WAITING_STATES)}) job of {flt.username}"


def bulk_preview(*, flt: BulkFilter, sample_size: int = 10) -> BulkPreview:
    """What a bulk action would do, for its confirmation step: counts and the first jobs."""
    eligible = _eligible(flt)
    return BulkPreview(filter=flt, description=_describe(flt), matching=_matching(flt).count(),
                       eligible=eligible.count(),
                       sample=list(eligible.select_related("owner").order_by("-created_at")[:sample_size]))


def _batches(qs: QuerySet[Job], limit: int) -> Iterator[list[Job]]:
    """The rows in primary-key order, a batch at a time, at most `limit` in all."""
    last, taken = None, 0
    while taken < limit:
        page = qs.filter(pk__gt=last) if last is not None else qs
        batch = list(page.order_by("pk")[:min(BATCH_SIZE, limit - taken)])
        if not batch:
            return
        taken += len(batch)
        last = batch[-1].pk
        yield batch


def _move_one(flt: BulkFilter, actor: str) -> Callable[[Job], Job]:
    if flt.action == "replay_dead":
        def replay(job: Job) -> Job:
            letter = DeadLetter.objects.filter(job=job).first()
            if letter is None:
                raise JobError("the dead letter is gone", code="not_found", status=404)
            return actions.dead_letter_replay(dead_letter=letter, actor=actor)
        return replay
    if flt.action == "retry_failed":
        return lambda job: actions.job_retry(job=job, actor=actor)
    return lambda job: actions.job_cancel(job=job, actor=actor)


def bulk_run(*, flt: BulkFilter, staff: AbstractBaseUser, limit: int = BULK_MAX_JOBS) -> BulkResult:
    """Moves every eligible job (at most `limit`), each through its single action's service."""
    if not staff.is_staff:
        raise JobError("bulk actions are for staff", code="permission_denied", status=403)
    actor = f"staff:{staff.get_username()}"
    result = BulkResult(filter=flt, description=_describe(flt))
    move = _move_one(flt, actor)
    message = f"bulk: {result.description}"
    for batch in _batches(_eligible(flt), limit):
        moved = []
        for job in batch:
            try:
                move(job)
            except JobError:
                result.refused += 1  # moved by someone else meanwhile, or refused by the action's rules
            else:
                moved.append(job.pk)
        if moved:
            LogEntry.objects.log_actions(user_id=staff.pk, queryset=Job.objects.filter(pk__in=moved),
                                         action_flag=CHANGE, change_message=message[:1000])
            result.moved.extend(str(pk) for pk in moved)
    result.remaining = _eligible(flt).count()
    logger.info("ops.bulk action=%s actor=%s job_type=%s reason=%r username=%s moved=%d refused=%d remaining=%d",
                flt.action, actor, flt.job_type, flt.reason, flt.username, len(result.moved), result.refused,
                result.remaining)
    return result
