"""OpenAPI links: which operation a client can call next with a value from a response.

A drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) adds
them, since extend_schema has no way to declare links. They document the flows (create a
job, then read, cancel or retry it; start an upload, then sign, complete or abort it; a
completed upload is a job's input) and let schemathesis's stateful phase follow them.
"""

from __future__ import annotations

JOB_ID = {"job_id": "$response.body#/id"}
UPLOAD_ID = {"upload_id": "$response.body#/upload_id"}

JOB_NEXT = {
    "GetJob": ("jobs_retrieve", JOB_ID, "the job, with its events and result"),
    "CancelJob": ("jobs_cancel", JOB_ID, "cancel the job"),
    "RetryJob": ("jobs_retry", JOB_ID, "queue the job again once FAILED or DEAD"),
    "GetResultUrl": ("jobs_result_url", JOB_ID, "a download URL for the job's result or input"),
}
UPLOAD_NEXT = {
    "SignParts": ("uploads_multipart_sign_parts", UPLOAD_ID, "presigned URLs for the parts"),
    "CompleteUpload": ("uploads_multipart_complete", UPLOAD_ID, "join the uploaded parts"),
    "AbortUpload": ("uploads_multipart_abort", UPLOAD_ID, "abandon the upload"),
}
CREATE_JOB = {"CreateJob": ("jobs_create", None, "a job on the uploaded object")}

# (operationId, status) -> links of that response.
LINKS: dict[tuple[str, str], dict] = {
    ("jobs_create", "201"): JOB_NEXT,
    ("jobs_create", "200"): JOB_NEXT,
    ("jobs_retrieve", "200"): JOB_NEXT,
    ("jobs_cancel", "200"): JOB_NEXT,
    ("jobs_retry", "200"): JOB_NEXT,
    ("dead_letters_replay", "200"): JOB_NEXT,
    ("uploads_multipart_create", "201"): UPLOAD_NEXT,
    ("uploads_multipart_complete", "201"): CREATE_JOB,
    ("uploads_put", "201"): CREATE_JOB,
    ("uploads_form", "201"): CREATE_JOB,
}
# The body a CreateJob link sends: the completed upload's key as the input.
CREATE_JOB_BODY = {"input_object_key": "$response.body#/object_key"}


def _link(operation_id: str, parameters: dict | None, description: str) -> dict:
    link = {"operationId": operation_id, "description": description}
    if parameters is None:
        link["requestBody"] = CREATE_JOB_BODY
    else:
        link["parameters"] = parameters
    return link


def add_links(result: dict, generator=None, request=None, public=None) -> dict:
    """Adds LINKS to the responses of the operations the schema has (a filtered schema may lack some)."""
    operations = {op.get("operationId"): op for methods in result.get("paths", {}).values()
                  for op in methods.values() if isinstance(op, dict)}
    for (operation_id, status), links in LINKS.items():
        response = operations.get(operation_id, {}).get("responses", {}).get(status)
        if response is None:
            continue
        response["links"] = {name: _link(target, parameters, description)
                             for name, (target, parameters, description) in links.items()
                             if target in operations}
    return result


# --- The streamed uploads -----------------------------------------------------------------
# PUT /api/v1/uploads/<filename> and POST /api/v1/uploads/ are served by an ASGI app ahead of
# Django (jobs/uploads/consumers.py), so no DRF view describes them; this fragment does, and
# `add_streamed_uploads` puts it into the schema.

UPLOAD_RESULT = {
    "type": "object",
    "description": "The stored object: its object_key is a job's input_object_key.",
    "properties": {
        "bucket": {"type": "string"},
        "object_key": {"type": "string"},
        "size": {"type": "integer", "minimum": 0, "description": "bytes stored"},
        "etag": {"type": "string"},
        "sha256": {"type": "string", "nullable": True, "description": "hex SHA-256 of the bytes as received"},
        "filename": {"type": "string", "description": "the name as stored (separators and control characters "
                                                      "removed)"},
    },
    "required": ["bucket", "object_key", "size", "etag", "sha256", "filename"],
}
UPLOAD_EXAMPLE = {
    "bucket": "job-inputs", "object_key": "uploads/1/0c0e8351-617c-4170-aee0-0fb6b4b369ef/people.csv", "size": 219,
    "etag": "f5f3b3b566f3b885a29c544a498e3cde",
    "sha256": "87ae64ce38870e4567e22cc6be45a78d7b052d4fee87bfe0f7746996a3eb3741", "filename": "people.csv",
}
UPLOAD_NOTE = ("The body streams into object storage as it arrives (nothing holds the whole file); an "
               "interrupted or refused upload is aborted and leaves no object. Limits: UPLOAD_MAX_BYTES, "
               "uploads under way per user, the `upload` throttle, and an idle timeout.")


def _upload_operation(operation_id: str, summary: str, request_body: dict, security: list) -> dict:
    return {
        "operationId": operation_id, "summary": summary, "description": UPLOAD_NOTE, "tags": ["uploads"],
        "requestBody": request_body, "security": security,
        "responses": {"201": {"description": "stored", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/UploadResult"},
            "examples": {"people.csv": {"value": UPLOAD_EXAMPLE}}}}},
            **{str(code): {"$ref": "#/components/schemas/ErrorBody", "description": description}
               for code, description in UPLOAD_ERRORS.items()}},
    }


UPLOAD_ERRORS = {400: "invalid input", 401: "not authenticated", 403: "not allowed",
                 408: "no bytes arrived for a while", 413: "the file is over the upload limit",
                 429: "too many uploads or requests (see Retry-After)", 502: "object storage refused the upload",
                 503: "object storage unavailable"}


def streamed_upload_paths(security: list) -> dict:
    raw = {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                 "format": "binary"}}}}
    form = {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]},
        "encoding": {"file": {"contentType": "application/octet-stream"}}}}}
    put = _upload_operation("uploads_put", "Upload a file as the raw request body", raw, security)
    put["parameters"] = [{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"},
                          "description": "the file's name (percent-encoded); kept as the object's last segment",
                          "example": "people.csv"}]
    post = _upload_operation("uploads_form", "Upload a file as multipart/form-data (field `file`)", form, security)
    post["responses"]["415"] = {"$ref": "#/components/schemas/ErrorBody",
                                "description": "the body is not multipart/form-data"}
    return {"/api/v1/uploads/{filename}": {"put": put}, "/api/v1/uploads/": {"post": post}}


def _resolve_error_refs(operation: dict) -> None:
    # Responses above name the error body by its schema; OpenAPI wants a Response Object.
    for status, response in operation["responses"].items():
        if "$ref" in response:
            operation["responses"][status] = {"description": response["description"], "content": {
                "application/json": {"schema": {"$ref": response["$ref"]}}}}


def add_streamed_uploads(result: dict, generator=None, request=None, public=None) -> dict:
    """Adds the two streamed upload operations (and their result schema) to the schema."""
    paths = result.setdefault("paths", {})
    if "/api/v1/jobs/" not in paths:
        return result  # a schema of some other part of the site
    security = paths["/api/v1/jobs/"].get("post", {}).get("security", [])
    for path, methods in streamed_upload_paths(security).items():
        for operation in methods.values():
            _resolve_error_refs(operation)
        paths.setdefault(path, {}).update(methods)
    result.setdefault("components", {}).setdefault("schemas", {})["UploadResult"] = UPLOAD_RESULT
    result["paths"] = dict(sorted(paths.items()))
    return result


# --- Error codes, per response ------------------------------------------------------------
# Every error body is {"error": {"code", "message", "details"}}; `code` is what a client
# branches on. These are the codes each response can carry (jobs/api/errors.py, the
# services the views call, jobs/uploads/), listed in its description with one example each.

ANY_OPERATION = {
    "400": ["invalid"],
    "401": ["not_authenticated", "authentication_failed"],
    "403": ["permission_denied"],
    "404": ["not_found"],
    "405": ["method_not_allowed"],
    "413": ["too_large"],
    "415": ["unsupported_media_type"],
    "429": ["throttled"],
    "503": ["service_unavailable"],
}
JOB_ACTION = {"404": ["not_found"], "409": ["invalid_state"]}
# A callback or endpoint URL that is not http(s), does not resolve, or names a private address.
WEBHOOK_URL_CODES = ["invalid", "parse_error", "invalid_destination", "destination_refused"]
ERROR_CODES: dict[str, dict[str, list[str]]] = {
    "jobs_list": {"400": ["invalid_filter"]},
    "jobs_create": {
        "400": ["invalid", "parse_error", "invalid_job_type", "unknown_job_type", "invalid_params", "invalid_input",
                "invalid_key", "invalid_idempotency_key", "invalid_destination", "destination_refused"],
        "404": ["input_not_found"], "409": ["idempotency_key_reused"],
        "503": ["storage_unavailable", "service_unavailable"],
    },
    "jobs_result_url": {"400": ["invalid", "invalid_expiry"], "409": ["not_ready"],
                        "503": ["storage_unavailable", "service_unavailable"]},
    "jobs_cancel": JOB_ACTION,
    "jobs_retry": JOB_ACTION,
    "dead_letters_list": {"400": ["invalid_filter"]},
    "dead_letters_replay": JOB_ACTION,
    "uploads_multipart_create": {"400": ["invalid", "invalid_size", "invalid_key"], "413": ["too_large"],
                                 "503": ["storage_unavailable", "service_unavailable"]},
    "uploads_multipart_sign_parts": {"400": ["invalid", "invalid_part_number"], "409": ["upload_finished"]},
    "uploads_multipart_complete": {"400": ["invalid", "invalid_parts", "size_mismatch"], "409": ["upload_finished"],
                                   "503": ["storage_unavailable", "service_unavailable"]},
    "uploads_multipart_abort": {"409": ["upload_finished"], "503": ["storage_unavailable", "service_unavailable"]},
    **{f"uploads_s3_multipart_{step}": {"409": ["upload_finished"]}
       for step in ("list_parts", "abort", "sign_batch", "sign_part", "complete")},
    "webhook_endpoints_create": {"400": WEBHOOK_URL_CODES, "409": ["too_many_endpoints"]},
    "webhook_endpoints_update": {"400": WEBHOOK_URL_CODES},
    "webhook_endpoints_list": {"400": ["invalid_filter"]},
    "webhook_deliveries_list": {"400": ["invalid_filter"]},
    "webhook_deliveries_replay": {"409": ["delivery_pending"]},
    "uploads_put": {"400": ["bad_request"], "408": ["upload_idle"], "429": ["too_many_uploads", "throttled"],
                    "502": ["storage_error"], "503": ["storage_unavailable"]},
    "uploads_form": {"400": ["bad_request", "malformed_form", "unexpected_file", "too_many_files", "file_missing"],
                     "408": ["upload_idle"], "429": ["too_many_uploads", "throttled"], "502": ["storage_error"],
                     "503": ["storage_unavailable"]},
}
EXAMPLE_MESSAGES = {
    "invalid": "invalid request: give exactly one of input_object_key and input_metadata",
    "parse_error": "JSON parse error - Expecting value: line 1 column 1 (char 0)",
    "invalid_filter": "unknown state 'DONE'; one of CREATED, QUEUED, PROCESSING, RETRYING, FAILED, COMPLETED, "
                      "CANCELLED, DEAD",
    "invalid_job_type": "job_type is required",
    "unknown_job_type": "Unknown job type 'CSV_ROWS'; valid types: CSV_PROFILE, CSV_ROW_COUNT, JSON_CANONICALIZE, "
                        "PDF_EXTRACT_TEXT, SHA256",
    "invalid_params": "params: unknown parameter 'colour'",
    "invalid_input": "input bucket must be 'job-inputs'",
    "invalid_key": "input_object_key is not a valid object key (control characters, a backslash, or an empty or "
                   "dot segment)",
    "invalid_idempotency_key": "Idempotency-Key must be 1 to 255 printable characters",
    "input_not_found": "input object not found",
    "idempotency_key_reused": "this Idempotency-Key was already used with a different request body",
    "invalid_expiry": "expiry_sec must be between 1 and 604800",
    "not_ready": "the job is QUEUED; results exist once it is COMPLETED",
    "invalid_state": "a COMPLETED job cannot be cancelled",
    "not_authenticated": "Authentication credentials were not provided.",
    "authentication_failed": "Invalid token.",
    "permission_denied": "You do not have permission to perform this action.",
    "not_found": "job not found",
    "method_not_allowed": "method GET not allowed here; use PUT",
    "too_large": "the file is larger than the upload limit of 5368709120 bytes",
    "unsupported_media_type": "Unsupported media type \"text/plain\" in request.",
    "throttled": "Request was throttled. Expected available in 12 seconds.",
    "service_unavailable": "the database is unavailable; try again in a few seconds",
    "storage_unavailable": "object storage is unavailable; try again shortly",
    "storage_error": "object storage refused the upload: ...",
    "bad_request": "invalid Content-Length header",
    "malformed_form": "malformed multipart/form-data body: unexpected end of data",
    "unexpected_file": "unexpected file in the field 'upload'; send one file, in the field 'file'",
    "too_many_files": "only one file per request, in the field 'file'",
    "file_missing": "the field 'file' must hold a chosen file",
    "invalid_size": "size must be a whole number of bytes, at least 1 (send an empty file with "
                    "PUT /api/v1/uploads/<filename>)",
    "invalid_part_number": "part_numbers must be a list of 1 to 1000 part numbers",
    "invalid_parts": "all 3 parts are needed; missing [2]",
    "size_mismatch": "the object is 1048576 bytes, not the 2097152 declared; it was removed",
    "upload_finished": "this upload is already completed",
    "invalid_destination": "the URL must start with http:// or https://",
    "destination_refused": "the host 'intranet.example' is not allowed: 10.0.0.7 is a private address",
    "too_many_endpoints": "at most 10 endpoints per user",
    "delivery_pending": "this delivery is still being attempted; replay it once it has succeeded or failed",
    "too_many_uploads": "at most 4 uploads at a time per user; wait for one to finish",
    "upload_idle": "no bytes of the upload arrived for 60 seconds; it was aborted",
}


def error_codes(operation_id: str, status: str) -> list[str]:
    own = ERROR_CODES.get(operation_id, {})
    return own.get(status) or ANY_OPERATION.get(status, [])


def error_example(code: str) -> dict:
    return {"error": {"code": code, "message": EXAMPLE_MESSAGES.get(code, code.replace("_", " ")), "details": {}}}


def describe_errors(result: dict, generator=None, request=None, public=None) -> dict:
    """Names the error codes of every 4xx/5xx response in its description, with an example
    body for each code."""
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                codes = error_codes(operation.get("operationId", ""), status) if status[0] in "45" else []
                body = response.get("content", {}).get("application/json")
                if not codes or body is None or "ErrorBody" not in str(body.get("schema")):
                    continue
                listed = ", ".join(f"`{code}`" for code in codes)
                response["description"] = f"{response.get('description', '').rstrip('.')}; error.code: {listed}"
                body["examples"] = {code: {"value": error_example(code)} for code in codes}
    return result
