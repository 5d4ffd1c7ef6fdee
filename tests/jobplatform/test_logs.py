"""LOG_FORMAT=json: every record one JSON line, with job_id, job_type, attempt and worker as fields."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import subprocess
import sys

import pytest

from jobs.models import JobState
from jobs.services.create import job_create
from tests.conftest import wait_for_state
from tests.factories import CSV


def json_logger(settings, stream: io.StringIO) -> logging.Logger:
    """A logger of its own behind the settings' JSON formatter and job filter (the root stays as it is)."""
    config = {**settings.LOGGING, "root": {"level": "WARNING"}, "incremental": False}
    config["handlers"] = {"capture": {"class": "logging.StreamHandler", "stream": stream, "formatter": "json",
                                      "filters": ["job"]}}
    config["loggers"] = {"jobplatform.test_logs": {"handlers": ["capture"], "level": "INFO", "propagate": False}}
    config["disable_existing_loggers"] = False
    logging.config.dictConfig(config)
    return logging.getLogger("jobplatform.test_logs")


def test_a_json_record_carries_the_job_fields_it_was_given(settings):
    stream = io.StringIO()
    log = json_logger(settings, stream)

    log.info("job.starting", extra={"job_id": "42", "job_type": "CSV_ROW_COUNT", "attempt": 2, "worker": "w@h"})

    record = json.loads(stream.getvalue().splitlines()[-1])
    assert record["message"] == "job.starting"
    assert record["level"] == "INFO"
    assert record["time"].endswith("+00:00")
    assert (record["job_id"], record["job_type"], record["attempt"], record["worker"]) == ("42", "CSV_ROW_COUNT", 2,
                                                                                          "w@h")


def test_a_json_record_outside_a_job_has_the_fields_empty(settings):
    stream = io.StringIO()
    log = json_logger(settings, stream)

    log.warning("sweep.failed")

    record = json.loads(stream.getvalue().splitlines()[-1])
    assert [record[name] for name in ("job_id", "job_type", "attempt", "worker")] == [None] * 4


def test_an_unknown_log_format_is_refused_at_start_up():
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"],
                          env={**os.environ, "LOG_FORMAT": "xml",
                               "DJANGO_SETTINGS_MODULE": "jobplatform.settings.web"},
                          capture_output=True, text=True)

    assert done.returncode != 0
    assert "LOG_FORMAT must be 'text' or 'json', got 'xml'" in done.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_json_worker_logs_each_job_line_with_its_id_type_attempt_and_worker(user, upload, celery_process):
    worker = celery_process("worker", extra_env={"LOG_FORMAT": "json"})
    job = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=upload(user, CSV)).job
    wait_for_state(job.id, JobState.COMPLETED)
    worker.stop()

    records = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
    about_job = [r for r in records if r.get("job_id") == str(job.id)]
    starting = next(r for r in about_job if r["message"].startswith("job.starting"))
    completed = next(r for r in about_job if r["message"].startswith("job.transition")
                     and "to=COMPLETED" in r["message"])
    for record in (starting, completed):
        assert (record["job_type"], record["attempt"]) == ("CSV_ROW_COUNT", 1)
        assert record["worker"].startswith(f"{worker.node}@")
    assert any(r["message"].startswith("celery@") or "ready." in r["message"] for r in records)
