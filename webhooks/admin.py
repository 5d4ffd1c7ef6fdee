"""Django admin for operators: every delivery with its attempts, and a replay action.

View-only, like the jobs admin: deliveries change through webhooks.services only. Signing
secrets are not shown at all.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .errors import WebhookError
from .models import Delivery, DeliveryAttempt, Endpoint
from .services import delivery_replay


class ViewOnly:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AttemptInline(ViewOnly, admin.TabularInline):
    model = DeliveryAttempt
    fields = ("round", "number", "started_at", "duration_ms", "address", "status_code", "succeeded", "error",
              "response_snippet")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "attempts"


@admin.register(Delivery)
class DeliveryAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ("created_at", "event_type", "state", "owner", "url", "attempt_count", "replay_count",
                    "last_status_code", "last_error", "job_id")
    list_filter = ("state", "event_type", ("endpoint", admin.EmptyFieldListFilter))
    search_fields = ("=id", "=job__id", "=message_id", "url", "owner__username")
    list_select_related = ("owner",)
    readonly_fields = ("id", "message_id", "owner", "job", "endpoint", "url", "event_type", "state",
                       "attempt_count", "replay_count", "next_attempt_at", "last_status_code", "last_error",
                       "created_at", "finished_at", "body")
    fields = readonly_fields
    inlines = (AttemptInline,)
    actions = ("replay_deliveries",)
    date_hierarchy = "created_at"

    @admin.action(description="Replay selected deliveries (same body and webhook-id, a new signature)")
    def replay_deliveries(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        replayed, refused = 0, []
        for delivery in queryset:
            try:
                delivery_replay(delivery=delivery, actor=f"admin:{request.user.get_username()}")
                replayed += 1
            except WebhookError as exc:
                refused.append(f"{delivery.pk}: {exc.message}")
        if replayed:
            self.message_user(request, f"{replayed} deliveries queued again.", messages.SUCCESS)
        for line in refused[:20]:
            self.message_user(request, line, messages.WARNING)


@admin.register(Endpoint)
class EndpointAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ("url", "owner", "events", "enabled", "created_at")
    list_filter = ("enabled", "events")
    search_fields = ("url", "owner__username")
    list_select_related = ("owner",)
