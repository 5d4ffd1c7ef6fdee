"""Django admin for operators: every job, its timeline, its dead letter, and the actions on them.

Pages are view-only: a job changes only through the services (the actions below), because
saving the admin form would write back a stale copy of a row that workers update all the
time. Nothing here can be added by hand either: jobs come from the job factory.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import F, Q, QuerySet, Value
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django_celery_results.models import TaskResult

import storage
from jobs.errors import JobError
from jobs.models import DeadLetter, Job, JobEvent, JobState
from jobs.paging import EstimatedCountPaginator
from jobs.services.actions import (
    PERMANENT_FAILURES,
    dead_letter_replay,
    job_cancel,
    job_download_url,
    job_retry,
    job_retry_refusal,
)
from processors import all_processors

LINK_EXPIRY = 3600
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# A search shorter than a trigram cannot use the file-name index, so it matches ids only.
MIN_TEXT_SEARCH = 3
HEX_PREFIX = re.compile(r"[0-9a-f-]{4,36}")


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


def _presigned_link(job: Job, which: str, output: str | None = None, label: str | None = None) -> str:
    try:
        url, _ = job_download_url(job=job, which=which, expiry_sec=LINK_EXPIRY, output=output)
    except (JobError, storage.StorageError) as exc:
        return format_html("<span>{}</span>", getattr(exc, "message", str(exc)))
    return format_html('<a href="{}" rel="noreferrer">{}</a>', url, label or output or which)


def _when(value) -> str:
    return value.strftime(TIME_FORMAT) if value else "-"


def is_uuid(term: str) -> bool:
    try:
        uuid.UUID(term)
    except ValueError:
        return False
    return True


def id_search(field: str, term: str) -> Q | None:
    """A whole id, or its first characters (4 or more), as one range of the primary-key index."""
    try:
        return Q(**{field: uuid.UUID(term)})
    except ValueError:
        pass
    digits = term.lower().replace("-", "")
    if not HEX_PREFIX.fullmatch(term.lower()) or len(digits) < 4 or len(digits) > 32:
        return None
    return Q(**{f"{field}__gte": uuid.UUID(digits.ljust(32, "0")), f"{field}__lte": uuid.UUID(digits.ljust(32, "f"))})


def owner_ids(username: str) -> list[int]:
    """Users by exact username (its unique index), read first so the job query stays one index each."""
    return list(get_user_model().objects.filter(username=username).values_list("pk", flat=True))


class ReadOnlyAdmin(admin.ModelAdmin):
    # No count(*) over the whole table on each page: exact up to a bound, then estimated.
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    # Rendering the rows is most of a page's time; 50 fit a screen or two.
    list_per_page = 50

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class JobEventInline(admin.TabularInline):
    model = JobEvent
    fields = ("created_at", "from_state", "to_state", "attempt", "actor", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = "timeline"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class JobTypeFilter(admin.SimpleListFilter):
    """The registered job types; Django's default would read DISTINCT job_type over every row."""

    title = "job type"
    parameter_name = "job_type"
    field = "job_type"

    def lookups(self, request, model_admin):
        return [(p.job_type, p.job_type) for p in all_processors()]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class DeadLetterJobTypeFilter(JobTypeFilter):
    parameter_name = "job__job_type"
    field = "job__job_type"


PERMANENT_CODES = sorted(set().union(*PERMANENT_FAILURES.values()))


class RetryFilter(admin.SimpleListFilter):
    """FAILED jobs split by whether a retry can help (jobs.services.actions.PERMANENT_FAILURES)."""

    title = "retry"
    parameter_name = "retry"

    def lookups(self, request, model_admin):
        return [("helps", "FAILED, a retry may help"), ("useless", "FAILED, a retry cannot help")]

    def queryset(self, request, queryset):
        if self.value() == "helps":
            return queryset.filter(state=JobState.FAILED).exclude(error_code__in=PERMANENT_CODES)
        if self.value() == "useless":
            return queryset.filter(state=JobState.FAILED, error_code__in=PERMANENT_CODES)
        return queryset


class JobActions:
    """Retry, cancel and replay through the services, with one message per job."""

    @admin.action(description="Retry selected FAILED/DEAD jobs where a retry can help")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset:
            try:  # refused, with the reason, where a retry cannot help (job_retry_refusal)
                job = job_retry(job=job, actor=_actor(request))
            except JobError as exc:
                self.message_user(request, f"{job.id}: not retried: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"{job.id}: retried, now {job.state}", messages.SUCCESS)

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset:
            try:
                job = job_cancel(job=job, actor=_actor(request))
            except JobError as exc:
                self.message_user(request, f"{job.id}: not cancelled: {exc.message}", messages.WARNING)
            else:
                done = "cancelled" if job.state == JobState.CANCELLED else "cancel requested; stops at its next chunk"
                self.message_user(request, f"{job.id}: {done}", messages.SUCCESS)

    @admin.action(description="Replay selected DEAD jobs from their dead letters")
    def replay_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset:
            letter = DeadLetter.objects.filter(job=job).first()
            if letter is None:
                self.message_user(request, f"{job.id}: not replayed: it has no dead letter ({job.state})",
                                  messages.WARNING)
                continue
            _replay(self, request, letter)


def _replay(model_admin: admin.ModelAdmin, request: HttpRequest, letter: DeadLetter) -> None:
    try:
        job = dead_letter_replay(dead_letter=letter, actor=_actor(request))
    except JobError as exc:
        model_admin.message_user(request, f"{letter.job_id}: not replayed: {exc.message}", messages.WARNING)
    else:
        model_admin.message_user(request, f"{job.id}: replayed, now {job.state}", messages.SUCCESS)


@admin.register(Job)
class JobAdmin(JobActions, ReadOnlyAdmin):
    list_display = ("file_name", "short_id", "owner", "job_type", "state", "attempts_of", "progress", "created",
                    "finished")
    list_display_links = ("file_name",)
    # Each filter is a fixed list: none reads the table to find its choices.
    list_filter = ("state", JobTypeFilter, RetryFilter, "created_at")
    search_fields = ("id", "input_name", "owner__username")  # matched by get_search_results
    search_help_text = "A job id (whole, or its first 4+ characters), part of a file name, or an exact username."
    list_select_related = ("owner",)
    actions = ("retry_jobs", "cancel_jobs", "replay_jobs")
    inlines = (JobEventInline,)
    fieldsets = (
        (None, {"fields": ("id", "owner", "job_type", "processor_version", "params", "state", "progress",
                           "attempts", "max_attempts", "worker_deaths", "cancel_requested")}),
        ("Input and results", {"fields": ("input_name", "input_bucket", "input_key", "input_size", "input_etag",
                                          "input_link", "result_links", "result", "error_code",
                                          "error_message", "retry_advice", "dead_letter_link")}),
        ("Execution", {"fields": ("worker", "claim_token", "heartbeat_at", "lease_expires_at", "next_attempt_at",
                                  "publish_count", "celery_task_id", "task_results", "idempotency_key")}),
        ("Times", {"fields": ("created_at", "queued_at", "started_at", "finished_at", "updated_at")}),
    )

    def get_ordering(self, request):
        term = request.GET.get("q", "").strip()
        if len(term) >= MIN_TEXT_SEARCH and not is_uuid(term):
            # Newest first by an expression no index serves: the planner then reads the
            # trigram index's matches and sorts them, instead of walking the created_at index
            # across all history in the hope of meeting matches early.
            return [(F("created_at") + Value(timedelta(0))).desc()]
        return super().get_ordering(request)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = id_search("id", term) or Q(pk__in=[])
        if len(term) >= MIN_TEXT_SEARCH:
            match |= Q(input_name__icontains=term) | Q(owner_id__in=owner_ids(term))
        return queryset.filter(match), False

    @admin.display(description="file", ordering="input_name")
    def file_name(self, job: Job) -> str:
        return job.input_name or "(unnamed)"

    @admin.display(description="id")
    def short_id(self, job: Job) -> str:
        return format_html('<code title="{}">{}</code>', job.id, str(job.id)[:8])

    @admin.display(description="attempts", ordering="attempts")
    def attempts_of(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="created (UTC)", ordering="created_at")
    def created(self, job: Job) -> str:
        return _when(job.created_at)

    @admin.display(description="finished (UTC)", ordering="finished_at")
    def finished(self, job: Job) -> str:
        return _when(job.finished_at)

    @admin.display(description="retry")
    def retry_advice(self, job: Job) -> str:
        if job.state not in (JobState.FAILED, JobState.DEAD):
            return "-"
        return job_retry_refusal(job=job) or "a retry may help (the Retry action queues it)"

    @admin.display(description="progress")
    def progress(self, job: Job) -> str:
        percent = job.progress_percent
        return "-" if percent is None else f"{percent:.0f}%"

    @admin.display(description="input (presigned, 1 h)")
    def input_link(self, job: Job) -> str:
        return _presigned_link(job, "input", label=job.input_name or "input")

    @admin.display(description="results (presigned, 1 h)")
    def result_links(self, job: Job) -> str:
        if job.state != JobState.COMPLETED:
            return "-"
        names = [key.rsplit("/", 1)[-1] for key in job.result_keys]
        return format_html_join(" · ", "{}", ((_presigned_link(job, "result", output=name),) for name in names))

    @admin.display(description="Celery task results")
    def task_results(self, job: Job) -> str:
        if not job.task_ids:
            return "-"
        found = TaskResult.objects.filter(task_id__in=job.task_ids).order_by("date_created")
        links = format_html_join(
            ", ", '<a href="{}">{} ({})</a>',
            ((reverse("admin:django_celery_results_taskresult_change", args=[r.pk]), r.task_id, r.status)
             for r in found))
        every = reverse("admin:django_celery_results_taskresult_changelist") + "?" + urlencode(
            {"task_id__in": ",".join(job.task_ids)})
        return format_html('{} <a href="{}">all {} task ids</a>', links or "none recorded yet;", every,
                           len(job.task_ids))

    @admin.display(description="dead letter")
    def dead_letter_link(self, job: Job) -> str:
        letter = DeadLetter.objects.filter(job=job).first()
        if letter is None:
            return "-"
        return format_html('<a href="{}">{}</a>', reverse("admin:jobs_deadletter_change", args=[letter.pk]),
                           "pending" if letter.is_pending else f"replayed {letter.replay_count}x")

    def get_readonly_fields(self, request, obj=None):
        return [f for fieldset in self.fieldsets for f in fieldset[1]["fields"]]


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    # Short columns, so the list fits 1280 px: the whole reason and id are on the letter's page.
    list_display = ("job_link", "job_type", "owner", "short_reason", "attempts", "died", "replay_count", "pending")
    list_filter = ("died_at", "replayed_at", DeadLetterJobTypeFilter, "job__state")
    search_fields = ("job__id", "reason", "job__owner__username")  # matched by get_search_results
    search_help_text = "A job id (whole, or its first 4+ characters), part of the reason, or an exact username."
    list_select_related = ("job", "job__owner")
    actions = ("replay",)
    fields = ("job_link", "job_type", "owner", "job_state", "reason", "traceback_pre", "attempts", "died_at",
              "replayed_at", "replay_count", "pending")
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = id_search("job_id", term) or Q(pk__in=[])
        if len(term) >= MIN_TEXT_SEARCH:
            # Dead letters are few (DEAD_LETTER_RETENTION_DAYS bounds them): the reason is scanned.
            match |= Q(reason__icontains=term) | Q(job__owner_id__in=owner_ids(term))
        return queryset.filter(match), False

    @admin.display(description="job")
    def job_link(self, letter: DeadLetter) -> str:
        return format_html('<a href="{}" title="{}">{}</a>', reverse("admin:jobs_job_change", args=[letter.job_id]),
                           letter.job_id, letter.job.input_name or str(letter.job_id)[:8])

    @admin.display(description="died (UTC)", ordering="died_at")
    def died(self, letter: DeadLetter) -> str:
        return _when(letter.died_at)

    @admin.display(description="type")
    def job_type(self, letter: DeadLetter) -> str:
        return letter.job.job_type

    @admin.display(description="owner")
    def owner(self, letter: DeadLetter) -> str:
        return letter.job.owner.get_username()

    @admin.display(description="job state")
    def job_state(self, letter: DeadLetter) -> str:
        return letter.job.state

    @admin.display(description="reason")
    def short_reason(self, letter: DeadLetter) -> str:
        short = letter.reason if len(letter.reason) <= 80 else letter.reason[:77] + "..."
        return format_html('<span title="{}">{}</span>', letter.reason, short)

    @admin.display(description="traceback")
    def traceback_pre(self, letter: DeadLetter) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', letter.traceback or "(none)")

    @admin.display(description="pending", boolean=True)
    def pending(self, letter: DeadLetter) -> bool:
        return letter.is_pending

    @admin.action(description="Replay selected dead letters (queue their jobs again)")
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        for letter in queryset:
            _replay(self, request, letter)
