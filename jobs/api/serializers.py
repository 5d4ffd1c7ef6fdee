"""Small input and output serializers for the API views (shape only; rules are in services)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from jobs.models import JobState


class InputMetadataSerializer(serializers.Serializer):
    bucket = serializers.CharField(max_length=255)
    key = serializers.CharField(max_length=1024)


class JobCreateInputSerializer(serializers.Serializer):
    job_type = serializers.CharField(max_length=64)
    input_object_key = serializers.CharField(max_length=1024, required=False,
                                             help_text="an object key returned by an upload")
    input_metadata = InputMetadataSerializer(required=False, help_text="the input as {bucket, key}")
    params = serializers.DictField(required=False, default=dict, help_text="the job type's parameters")

    def validate(self, attrs: dict) -> dict:
        if ("input_object_key" in attrs) == ("input_metadata" in attrs):
            raise serializers.ValidationError("give exactly one of input_object_key and input_metadata")
        return attrs


class JobFilterSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=JobState.choices, required=False)
    job_type = serializers.CharField(max_length=64, required=False)
    created_after = serializers.DateTimeField(required=False, help_text="ISO 8601 date or date-time, inclusive")
    created_before = serializers.DateTimeField(required=False, help_text="ISO 8601 date or date-time, exclusive")


class ResultUrlQuerySerializer(serializers.Serializer):
    expiry_sec = serializers.IntegerField(required=False, min_value=1, max_value=settings.PRESIGNED_URL_MAX_EXPIRY,
                                          help_text="how long the URL stays valid (default 3600)")
    output = serializers.CharField(required=False, max_length=200, help_text="an output name; default result.json")
    which = serializers.ChoiceField(choices=["result", "input"], required=False, default="result")


class ProgressSerializer(serializers.Serializer):
    bytes = serializers.IntegerField(source="progress_bytes")
    total = serializers.IntegerField(source="progress_total")
    percent = serializers.FloatField(source="progress_percent", allow_null=True)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class InputSerializer(serializers.Serializer):
    bucket = serializers.CharField(source="input_bucket")
    key = serializers.CharField(source="input_key")
    name = serializers.CharField(source="input_name")
    size = serializers.IntegerField(source="input_size")


class JobEventSerializer(serializers.Serializer):
    # "from" is a Python keyword, so the field is named in the constructor's source map.
    to = serializers.CharField(source="to_state")
    reason = serializers.CharField()
    attempt = serializers.IntegerField()
    actor = serializers.CharField()
    at = serializers.DateTimeField(source="created_at")

    def get_fields(self):
        fields = super().get_fields()
        return {"from": serializers.CharField(source="from_state"), **fields}


class JobSerializer(serializers.Serializer):
    """A job as listed: everything but its result, which can be large (fetch the job for it)."""

    id = serializers.UUIDField()
    job_type = serializers.CharField()
    state = serializers.ChoiceField(choices=JobState.choices)
    stalled = serializers.BooleanField(source="is_stalled", help_text=(
        "PROCESSING with no progress for JOB_STALL_SECONDS; the sweeper re-queues it"))
    params = serializers.DictField()
    processor_version = serializers.CharField()
    input = InputSerializer(source="*")
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    progress = ProgressSerializer(source="*")
    error = serializers.SerializerMethodField()
    result_keys = serializers.ListField(child=serializers.CharField())
    cancel_requested = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    queued_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(ErrorSerializer(allow_null=True))
    def get_error(self, job) -> dict | None:
        return {"code": job.error_code, "message": job.error_message} if job.error_code else None


class JobDetailSerializer(JobSerializer):
    """One job, with its result. context["events"], when given, are the job's events oldest
    first, as the caller already holds them (the create writes them); otherwise they are read."""

    result = serializers.JSONField(allow_null=True)
    events = serializers.SerializerMethodField()

    @extend_schema_field(JobEventSerializer(many=True))
    def get_events(self, job) -> list[dict]:
        events = self.context.get("events")
        return JobEventSerializer(job.events.all() if events is None else events, many=True).data


class ResultUrlSerializer(serializers.Serializer):
    url = serializers.URLField()
    expires_at = serializers.DateTimeField()


class DeadLetterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    job_id = serializers.UUIDField()
    job_type = serializers.CharField(source="job.job_type")
    job_state = serializers.CharField(source="job.state")
    owner = serializers.CharField(source="job.owner.username")
    reason = serializers.CharField()
    traceback = serializers.CharField()
    attempts = serializers.IntegerField()
    died_at = serializers.DateTimeField()
    replayed_at = serializers.DateTimeField(allow_null=True)
    replay_count = serializers.IntegerField()
    pending = serializers.BooleanField(source="is_pending")


class DeadLetterFilterSerializer(serializers.Serializer):
    pending = serializers.BooleanField(required=False, default=False,
                                       help_text="only letters whose job is still DEAD")


class JobTypeSerializer(serializers.Serializer):
    job_type = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    version = serializers.CharField()
    params_schema = serializers.DictField()


class ErrorBodySerializer(serializers.Serializer):
    """{"error": {"code", "message", "details"}}, for the schema."""

    class _Error(serializers.Serializer):
        code = serializers.CharField()
        message = serializers.CharField()
        details = serializers.DictField()

    error = _Error()


def paginated(name: str, child: type[serializers.Serializer]) -> serializers.Serializer:
    """The page envelope of PageNumberPagination, for the schema."""
    return inline_serializer(name=name, fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": child(many=True),
    })
