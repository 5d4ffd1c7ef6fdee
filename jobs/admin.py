"""Django admin for operators: every job, its timeline, its dead letter, and the actions on them.

Pages are view-only: a job changes only through the services (the actions below), because
saving the admin form would write back a stale copy of a row that workers update all the
time. Nothing here can be added by hand either: jobs come from the job factory.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django_celery_results.models import TaskResult

import storage
from jobs.errors import JobError
from jobs.models import DeadLetter, Job, JobEvent, JobState
from jobs.services.actions import dead_letter_replay, job_cancel, job_download_url, job_retry

LINK_EXPIRY = 3600


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


def _presigned_link(job: Job, which: str, output: str | None = None, label: str | None = None) -> str:
    try:
        url, _ = job_download_url(job=job, which=which, expiry_sec=LINK_EXPIRY, output=output)
    except (JobError, storage.StorageError) as exc:
        return format_html("<span>{}</span>", getattr(exc, "message", str(exc)))
    return format_html('<a href="{}" rel="noreferrer">{}</a>', url, label or output or which)


class ReadOnlyAdmin(admin.ModelAdmin):
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


class JobActions:
    """Retry, cancel and replay through the services, with one message per job."""

    @admin.action(description="Retry selected FAILED/DEAD jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset:
            try:
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
    list_display = ("id", "job_type", "state", "owner", "attempts", "progress", "created_at", "finished_at")
    list_filter = ("state", "job_type", ("owner", admin.RelatedOnlyFieldListFilter), "created_at")
    search_fields = ("id", "input_key", "input_name", "owner__username", "idempotency_key")
    date_hierarchy = "created_at"
    list_select_related = ("owner",)
    actions = ("retry_jobs", "cancel_jobs", "replay_jobs")
    inlines = (JobEventInline,)
    fieldsets = (
        (None, {"fields": ("id", "owner", "job_type", "processor_version", "params", "state", "progress",
                           "attempts", "max_attempts", "worker_deaths", "cancel_requested")}),
        ("Input and results", {"fields": ("input_name", "input_bucket", "input_key", "input_size", "input_etag",
                                          "input_link", "result_links", "result", "error_code",
                                          "error_message", "dead_letter_link")}),
        ("Execution", {"fields": ("worker", "claim_token", "heartbeat_at", "lease_expires_at", "next_attempt_at",
                                  "publish_count", "celery_task_id", "task_results", "idempotency_key")}),
        ("Times", {"fields": ("created_at", "queued_at", "started_at", "finished_at", "updated_at")}),
    )

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
    list_display = ("job_link", "job_type", "owner", "short_reason", "attempts", "died_at", "replayed_at",
                    "replay_count", "pending")
    list_filter = ("died_at", "replayed_at", "job__job_type", "job__state")
    search_fields = ("job__id", "reason", "job__owner__username")
    list_select_related = ("job", "job__owner")
    actions = ("replay",)
    fields = ("job_link", "job_type", "owner", "job_state", "reason", "traceback_pre", "attempts", "died_at",
              "replayed_at", "replay_count", "pending")
    readonly_fields = fields

    @admin.display(description="job")
    def job_link(self, letter: DeadLetter) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:jobs_job_change", args=[letter.job_id]),
                           letter.job_id)

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
        return letter.reason if len(letter.reason) <= 120 else letter.reason[:117] + "..."

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
