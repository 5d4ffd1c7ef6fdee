"""Schemathesis against the OpenAPI schema, on a real Uvicorn server: no input makes a 5xx,
neither one request at a time nor in sequences that follow the schema's links, and every
response matches the schema documented for its status. The streamed uploads (an ASGI app
ahead of DRF) are in the schema and fuzzed like the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

import storage
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
    args = [str(st), "--config-file", str(config), "run", f"{url}/api/v1/schema/",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--max-examples", str(MAX_EXAMPLES), "--phases", "examples,coverage,fuzzing", "--workers", "1",
            "--seed", "20240601", "--request-timeout", "20", "--max-failures", "10", "--no-color",
            "--header", f"Authorization: Token {token}"]
    result = subprocess.run(args, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                            env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-15000:] + "\nserver log:\n" + log.read_text()[-5000:]
    print(output[-4000:])
    assert " passed" in output
    # The fixed ids reached the services: the dead job was replayed or retried at least once.
    reasons = set(JobEvent.objects.filter(job=dead).values_list("reason", flat=True))
    assert reasons & {"replayed from dead letter", "retried by operator"}, reasons
    # The streamed uploads were in the run, and stored some of what they were sent.
    stored = set(storage.list_keys(storage.input_bucket(), storage.owner_upload_prefix(fuzzer.pk)))
    assert stored - {dead.input_key}, output[-4000:]


def test_the_schema_describes_the_streamed_uploads_with_binary_bodies_and_error_codes(start_web_server):
    server = start_web_server()
    with server.client() as http:
        schema = http.get("/api/v1/schema/", params={"format": "json"}).json()
    put = schema["paths"]["/api/v1/uploads/{filename}"]["put"]
    post = schema["paths"]["/api/v1/uploads/"]["post"]
    assert put["requestBody"]["content"]["application/octet-stream"]["schema"] == {"type": "string",
                                                                                  "format": "binary"}
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"} and form["required"] == ["file"]
    for operation in (put, post):
        assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/UploadResult"}
        assert set(operation["responses"]) >= {"201", "400", "401", "408", "413", "429", "503"}
    assert set(post["responses"]["400"]["content"]["application/json"]["examples"]) >= {
        "malformed_form", "file_missing", "too_many_files"}
    # Each error response lists its codes, each with an example body of that code.
    create = schema["paths"]["/api/v1/jobs/"]["post"]
    examples = create["responses"]["400"]["content"]["application/json"]["examples"]
    assert {"invalid", "unknown_job_type", "invalid_params", "invalid_key"} <= set(examples)
    assert all(example["value"]["error"]["code"] == code for code, example in examples.items())
    assert "`idempotency_key_reused`" in create["responses"]["409"]["description"]
    # Examples are real requests: none carries both ways of naming the input.
    for example in create["requestBody"]["content"]["application/json"]["examples"].values():
        assert ("input_object_key" in example["value"]) != ("input_metadata" in example["value"])
    text = json.dumps(schema)
    assert "additionalProp1" not in text and "context[" not in text and "for the schema" not in text


def _as_json_schema(node):
    """OpenAPI 3.0's `nullable` as JSON Schema's null type, and every local $ref made
    absolute (urn:api#/...), everywhere in a schema."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if isinstance(out.get("$ref"), str) and out["$ref"].startswith("#"):
        out["$ref"] = "urn:api" + out["$ref"]
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def test_every_example_in_the_schema_matches_its_own_schema(start_web_server):
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    server = start_web_server()
    with server.client() as http:
        schema = http.get("/api/v1/schema/", params={"format": "json"}).json()
    root = _as_json_schema(schema)
    registry = Registry().with_resource("urn:api", DRAFT202012.create_resource(root))
    checked = 0
    for path, methods in root["paths"].items():
        for method, operation in methods.items():
            bodies = [("request", operation.get("requestBody", {}))]
            bodies += [(status, response) for status, response in operation.get("responses", {}).items()]
            for where, body in bodies:
                for media in body.get("content", {}).values():
                    if "schema" not in media:
                        continue
                    validator = Draft202012Validator(media["schema"], registry=registry)
                    for name, example in media.get("examples", {}).items():
                        errors = [e.message for e in validator.iter_errors(example["value"])]
                        assert not errors, (method, path, where, name, errors[:3])
                        checked += 1
    assert checked > 40, checked


def test_api_and_upload_responses_render_json_alike(start_web_server, make_user):
    server = start_web_server()
    token = Token.objects.create(user=make_user("renderer")).key
    with server.client(headers={"Authorization": f"Token {token}"}) as http:
        bodies = [http.put("/api/v1/uploads/r\u00e9sum\u00e9.csv", content=b"a\n1\n"),  # the upload consumer
                  http.post("/api/v1/jobs/", json={"job_type": "NOPE", "input_object_key": "x"}),  # DRF
                  http.get("/api/v1/no-such-endpoint/"),  # Django's error handler
                  http.put("/api/v1/uploads/", content=b"x")]  # the upload consumer's error
    for response in bodies:
        # One rendering: no spaces after separators, non-ASCII as UTF-8, not \u escapes.
        data = response.json()
        assert response.content == json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(), \
            response.content
    assert "résumé.csv" in bodies[0].text


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
