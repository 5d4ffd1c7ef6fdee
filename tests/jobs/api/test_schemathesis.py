"""Schemathesis against the OpenAPI schema, on a real Uvicorn server: no input makes a 5xx,
neither one request at a time nor in sequences that follow the schema's links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from jobs.models import Job, JobEvent, JobState

MAX_EXAMPLES = 25
RUN_TIMEOUT = 300


@pytest.fixture
def uvicorn_server(start_web_server):
    """(base URL, log file) of a Uvicorn process serving the app on a free port."""
    server = start_web_server()
    return server.url, server.log


def test_no_generated_request_gets_a_server_error(uvicorn_server, make_user, make_job, tmp_path):
    url, log = uvicorn_server
    # Staff, so that the dead-letter endpoints run their code rather than stopping at 403.
    fuzzer = make_user("fuzzer", staff=True)
    token = Token.objects.create(user=fuzzer).key
    # A real dead job of the fuzzer's for every {job_id} and {id}: random ids would only ever
    # reach the 404 branch, never the services behind it.
    dead = make_job(fuzzer, JobState.DEAD)
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.job_id" = "{dead.id}"\n"path.id" = {dead.dead_letter.pk}\n')
    st = Path(sys.executable).parent / "st"
    args = [str(st), "--config-file", str(config), "run", f"{url}/api/v1/schema/", "--checks", "not_a_server_error",
            "--max-examples", str(MAX_EXAMPLES), "--phases", "examples,coverage,fuzzing", "--workers", "1",
            "--seed", "20240601", "--request-timeout", "20", "--max-failures", "10", "--no-color",
            "--header", f"Authorization: Token {token}",
            # The streaming uploads are a Channels consumer outside this schema (the
            # presigned multipart endpoints are DRF views in it, and are fuzzed).
            "--exclude-path-regex", "^/api/v1/uploads/(?!multipart/)"]
    result = subprocess.run(args, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                            env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-15000:] + "\nserver log:\n" + log.read_text()[-5000:]
    print(output[-4000:])
    assert " passed" in output
    # The fixed ids reached the services: the dead job was replayed or retried at least once.
    reasons = set(JobEvent.objects.filter(job=dead).values_list("reason", flat=True))
    assert reasons & {"replayed from dead letter", "retried by operator"}, reasons


STATEFUL_EXAMPLES = 40
STATEFUL_MAX_TIME = 60  # the phase repeats scenarios until this budget is spent
JOB_LINK_TARGETS = {"jobs_retrieve", "jobs_cancel", "jobs_retry", "jobs_result_url"}


def _narrowed(schema: dict, key: str) -> dict:
    """The served schema with job creation narrowed to the one real upload and a known type,
    so that generated creates succeed and the links then carry real job ids."""
    create = schema["components"]["schemas"]["JobCreateInput"]
    create["properties"] = {"job_type": {"type": "string", "enum": ["CSV_ROW_COUNT", "SHA256"]},
                            "input_object_key": {"type": "string", "enum": [key]},
                            "params": {"type": "object", "maxProperties": 0}}
    create["required"] = ["job_type", "input_object_key"]
    create["additionalProperties"] = False
    return schema


@pytest.mark.slow
def test_stateful_sequences_along_the_schemas_links_get_no_server_error(start_web_server, make_user, upload,
                                                                        tmp_path):
    server = start_web_server(THROTTLE_JOB_CREATE="100000/min", THROTTLE_JOB_ACTION="100000/min",
                              THROTTLE_UPLOAD="100000/min")
    fuzzer = make_user("stateful-fuzzer")
    token = Token.objects.create(user=fuzzer).key
    key = upload(fuzzer, b"name,size\na,1\n", "rows.csv")
    with server.client() as http:
        schema = http.get("/api/v1/schema/", params={"format": "json"}).json()
    # The served schema links a created job to the operations on it, and an upload to its steps.
    created = schema["paths"]["/api/v1/jobs/"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in created.values()} == JOB_LINK_TARGETS
    assert all(link["parameters"] == {"job_id": "$response.body#/id"} for link in created.values())
    upload_links = schema["paths"]["/api/v1/uploads/multipart/"]["post"]["responses"]["201"]["links"]
    assert {"uploads_multipart_sign_parts", "uploads_multipart_complete", "uploads_multipart_abort"} == {
        link["operationId"] for link in upload_links.values()}
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(_narrowed(schema, key)))
    st = Path(sys.executable).parent / "st"
    args = [str(st), "run", str(schema_file), "--url", server.url, "--phases", "stateful",
            "--checks", "not_a_server_error", "--mode", "positive", "--max-examples", str(STATEFUL_EXAMPLES),
            "--max-time", str(STATEFUL_MAX_TIME), "--seed", "20240601", "--workers", "1", "--request-timeout", "20",
            "--max-failures", "10", "--no-color", "--header", f"Authorization: Token {token}",
            "--exclude-path-regex", "^/api/v1/dead-letters/"]
    result = subprocess.run(args, check=False, cwd=tmp_path, capture_output=True, text=True,
                            timeout=STATEFUL_MAX_TIME + 120, env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-15000:] + "\nserver log:\n" + server.log.read_text()[-5000:]
    print(output[-4000:])
    # The links carried real ids: jobs the run created were then cancelled by id.
    jobs = Job.objects.filter(owner=fuzzer)
    assert jobs.exists(), output[-4000:]
    cancelled = JobEvent.objects.filter(job__in=jobs, to_state=JobState.CANCELLED, actor=f"user:{fuzzer.pk}")
    assert cancelled.exists(), output[-4000:]
