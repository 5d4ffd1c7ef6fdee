"""Small input and output serializers for the API views (shape only; rules are in services)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer, inline_serializer
from rest_framework import serializers

from jobs.models import JobState

# Real values, as the API answered them for examples/people.csv (the README's example): the
# schema shows these rather than placeholders generated from the field types.
_JOB_ID = "ded69c5e-4e32-43a3-bc65-90ee8e0148ec"
_INPUT_KEY = "uploads/1/0c0e8351-617c-4170-aee0-0fb6b4b369ef/people.csv"
_CREATED, _QUEUED, _STARTED, _FINISHED = ("2026-12-01T17:29:15.353447Z", "2026-12-01T17:29:15.352966Z",
                                          "2026-12-01T17:29:15.435679Z", "2026-12-01T17:29:15.743320Z")
_WORKER = "worker:worker@vm"
_JOB = {
    "id": _JOB_ID, "job_type": "CSV_ROW_COUNT", "state": "COMPLETED", "stalled": False,
    "params": {"encoding": "utf-8", "delimiter": ",", "quotechar": '"', "has_header": True},
    "processor_version": "1.0", "input": {"bucket": "job-inputs", "key": _INPUT_KEY, "name": "people.csv", "size": 219},
    "attempts": 1, "max_attempts": 5, "progress": {"bytes": 219, "total": 219, "percent": 100.0}, "error": None,
    "result_keys": [f"{_JOB_ID}/result.json"], "cancel_requested": False,
    "created_at": _CREATED, "updated_at": _FINISHED, "queued_at": _QUEUED, "started_at": _STARTED,
    "finished_at": _FINISHED,
}
_RESULT = {"rows": 5, "bytes": 219, "header": ["name", "city", "joined", "score"], "columns": 4, "blank_lines": 0}
_EVENTS = [
    {"from": "", "to": "CREATED", "reason": "created", "attempt": 0, "actor": "user:1",
     "at": "2026-12-01T17:29:15.355403Z"},
    {"from": "CREATED", "to": "QUEUED", "reason": "created", "attempt": 0, "actor": "enqueuer",
     "at": "2026-12-01T17:29:15.355418Z"},
    {"from": "QUEUED", "to": "PROCESSING", "reason": "claimed", "attempt": 1, "actor": _WORKER,
     "at": "2026-12-01T17:29:15.482024Z"},
    {"from": "PROCESSING", "to": "COMPLETED", "reason": "result written", "attempt": 1, "actor": _WORKER,
     "at": "2026-12-01T17:29:15.745511Z"},
]
_FAILED_ID = "752a652e-a37f-4990-9108-9fd2f4b3f3ee"
_FAILED = {
    **_JOB, "id": _FAILED_ID, "job_type": "JSON_CANONICALIZE", "state": "FAILED", "params": {"mode": "document"},
    "input": {"bucket": "job-inputs", "key": "uploads/1/320bdb81-f80c-4539-a961-3d23742db36e/bad.json",
              "name": "bad.json", "size": 11},
    "progress": {"bytes": 0, "total": 11, "percent": 0.0},
    "error": {"code": "invalid_json", "message": "Line 1, column 12: invalid JSON: Expecting ',' delimiter"},
    "result_keys": [], "result": None, "events": [],
}
_QUEUED_JOB = {
    **_JOB, "state": "QUEUED", "attempts": 0, "progress": {"bytes": 0, "total": 219, "percent": 0.0},
    "result_keys": [], "updated_at": _QUEUED, "started_at": None, "finished_at": None, "result": None,
    "events": _EVENTS[:2],
}
_DEAD_LETTER = {
    "id": 7, "job_id": "3b1e6f0a-9c24-4d57-8e13-a2f4c6d8b0e9", "job_type": "CSV_ROW_COUNT", "job_state": "DEAD",
    "owner": "admin", "reason": "attempts exhausted (5/5); last error: object storage is unavailable",
    "traceback": "Traceback (most recent call last):\n  ...\nstorage.errors.StorageUnavailable: s3://job-inputs/...",
    "attempts": 5, "died_at": "2026-12-01T17:41:03.120871Z", "replayed_at": None, "replay_count": 0, "pending": True,
}


class InputMetadataSerializer(serializers.Serializer):
    bucket = serializers.CharField(max_length=255)
    key = serializers.CharField(max_length=1024)


@extend_schema_serializer(examples=[
    OpenApiExample("By object key", request_only=True, description="the object_key an upload answered with",
                   value={"job_type": "CSV_ROW_COUNT", "input_object_key": _INPUT_KEY,
                          "params": {"has_header": True}}),
    OpenApiExample("By bucket and key", request_only=True,
                   value={"job_type": "SHA256", "input_metadata": {"bucket": "job-inputs", "key": _INPUT_KEY}}),
])
class JobCreateInputSerializer(serializers.Serializer):
    job_type = serializers.CharField(max_length=64)
    input_object_key = serializers.CharField(max_length=1024, required=False,
                                             help_text="an object key returned by an upload")
    input_metadata = InputMetadataSerializer(required=False, help_text="the input as {bucket, key}")
    params = serializers.DictField(required=False, default=dict,
                                   help_text="the job type's parameters (GET /api/v1/job-types/ has their schemas)")
    callback_url = serializers.URLField(required=False, allow_blank=True, max_length=2048, help_text=(
        "an http(s) URL that receives the job's terminal state as a signed webhook (docs/api.md#webhooks)"))

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


# Docstrings of serializers become schema descriptions; what clients read is in
# extend_schema_serializer / help_text, and notes for this code are comments.
@extend_schema_serializer(examples=[OpenApiExample("Completed", value=_JOB, response_only=True)])
class JobSerializer(serializers.Serializer):
    # A job as listed: everything but its result, which can be large (fetch the job for it).

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


@extend_schema_serializer(examples=[
    OpenApiExample("Queued", value=_QUEUED_JOB, response_only=True, description="as a create answers"),
    OpenApiExample("Completed", value={**_JOB, "result": _RESULT, "events": _EVENTS}, response_only=True),
    OpenApiExample("Failed", value=_FAILED, response_only=True),
])
class JobDetailSerializer(JobSerializer):
    # One job, with its result. context["events"], when given, are the job's events oldest
    # first, as the caller already holds them (the create writes them); otherwise they are read.

    result = serializers.JSONField(allow_null=True)
    events = serializers.SerializerMethodField()

    @extend_schema_field(JobEventSerializer(many=True))
    def get_events(self, job) -> list[dict]:
        events = self.context.get("events")
        return JobEventSerializer(job.events.all() if events is None else events, many=True).data


@extend_schema_serializer(examples=[OpenApiExample("A result link", response_only=True, value={
    "url": f"http://127.0.0.1:8333/job-outputs/{_JOB_ID}/result.json?response-content-disposition=attachment"
           "%3B%20filename%3D%22people.result.json%22&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
           "jobplatform%2F20261201%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261201T172917Z&X-Amz-Expires=3600"
           "&X-Amz-SignedHeaders=host&X-Amz-Signature=172c3e04e11b0a19419e39a58246fcb62eea90a7992b628144b52e2a840f4d18",
    "expires_at": "2026-12-01T18:29:17.555265Z"})])
class ResultUrlSerializer(serializers.Serializer):
    url = serializers.URLField()
    expires_at = serializers.DateTimeField()


@extend_schema_serializer(examples=[OpenApiExample("Pending replay", value=_DEAD_LETTER, response_only=True)])
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


@extend_schema_serializer(examples=[OpenApiExample("SHA-256", response_only=True, value={
    "job_type": "SHA256", "title": "SHA-256 checksum",
    "description": "SHA-256 hex digest and size in bytes of the input.", "version": "1.0",
    "params_schema": {"type": "object", "properties": {}, "additionalProperties": False}})])
class JobTypeSerializer(serializers.Serializer):
    job_type = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    version = serializers.CharField()
    params_schema = serializers.DictField()


class ErrorBodySerializer(serializers.Serializer):
    # {"error": {"code", "message", "details"}}, for the schema; each response's codes are
    # listed by jobs.api.schema.describe_errors.

    class _Error(serializers.Serializer):
        code = serializers.CharField()
        message = serializers.CharField()
        details = serializers.DictField(help_text="what the code needs explained, e.g. the field at fault")

    error = _Error()


def paginated(name: str, child: type[serializers.Serializer]) -> serializers.Serializer:
    """The page envelope of PageNumberPagination, for the schema."""
    fields = {
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": child(many=True),
    }
    item = PAGE_EXAMPLE_ITEMS.get(child)
    if item is None:
        return inline_serializer(name=name, fields=fields)
    page = {"count": 1, "next": None, "previous": None, "results": [item]}
    envelope = type(name, (serializers.Serializer,), fields)
    return extend_schema_serializer(examples=[OpenApiExample("A page", value=page, response_only=True)])(envelope)()


PAGE_EXAMPLE_ITEMS = {JobSerializer: _JOB, DeadLetterSerializer: _DEAD_LETTER}
