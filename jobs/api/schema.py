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
