"""Schemathesis against the OpenAPI schema, on a real Uvicorn server: no input makes a 5xx."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from jobs.models import JobEvent, JobState

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
