"""Input and output shapes of the webhooks API (rules are in webhooks.services)."""

from __future__ import annotations

import json

from rest_framework import serializers

from webhooks.models import DeliveryState, EventFilter


class EndpointInputSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2048, help_text="an http(s) URL on a public address")
    events = serializers.ChoiceField(choices=EventFilter.choices, required=False, default=EventFilter.TERMINAL,
                                     help_text="terminal: COMPLETED, FAILED, CANCELLED, DEAD; all: every state")
    enabled = serializers.BooleanField(required=False, default=True)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class EndpointPatchSerializer(EndpointInputSerializer):
    url = serializers.URLField(max_length=2048, required=False)
    events = serializers.ChoiceField(choices=EventFilter.choices, required=False)
    enabled = serializers.BooleanField(required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)


class EndpointSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    events = serializers.ChoiceField(choices=EventFilter.choices)
    enabled = serializers.BooleanField()
    description = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="whsec_ + base64: give it to a Standard Webhooks library to verify")
    previous_valid_until = serializers.DateTimeField(
        allow_null=True, help_text="until then the previous secret signs too (a second v1 signature)")
    rotated_at = serializers.DateTimeField(allow_null=True)


class RotateInputSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=7 * 24 * 3600,
        help_text="how long the previous secret keeps signing (default WEBHOOK_SECRET_GRACE_SECONDS; 0: retire it now)")


class AttemptSerializer(serializers.Serializer):
    round = serializers.IntegerField()
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    address = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    succeeded = serializers.BooleanField()
    error = serializers.CharField()
    response_snippet = serializers.CharField()


class DeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    job_id = serializers.UUIDField()
    endpoint_id = serializers.IntegerField(allow_null=True, help_text="null for the job's own callback_url")
    url = serializers.URLField()
    event_type = serializers.CharField()
    message_id = serializers.CharField(help_text="the webhook-id header, the same on every attempt and replay")
    state = serializers.ChoiceField(choices=DeliveryState.choices)
    attempt_count = serializers.IntegerField(help_text="attempts in the current round")
    replay_count = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    payload = serializers.SerializerMethodField(help_text="the body as sent: {type, timestamp, data}")
    attempts = AttemptSerializer(many=True)

    def get_payload(self, delivery) -> dict:
        return json.loads(delivery.body)


class DeliveryFilterSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=DeliveryState.choices, required=False)
    job_id = serializers.UUIDField(required=False)
