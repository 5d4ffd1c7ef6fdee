"""The result link in live job payloads: a worker reverses it through its own URLconf (the
web pages' alone, so it loads no admin, API views or drf-spectacular), and it is the same
path the root URLconf gives."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from django.urls import reverse, set_script_prefix

from jobs import notify


@pytest.mark.parametrize("prefix", ["/", "/jobplatform/"])
def test_the_download_path_is_the_one_the_root_urlconf_gives(prefix):
    job_id = uuid.uuid4()
    set_script_prefix(prefix)
    try:
        assert notify.download_path(job_id) == reverse("job-download", args=[job_id])
        assert notify.download_path(job_id) == f"{prefix}jobs/{job_id}/download"
    finally:
        set_script_prefix("/")


def test_a_worker_reverses_the_link_without_loading_the_whole_urlconf():
    code = (
        "import sys, uuid, django; django.setup()\n"
        "from jobs import notify, tasks\n"
        "tasks._warm_up_worker()\n"
        "print(notify.download_path(uuid.uuid4()))\n"
        "print(sorted(m for m in ('jobplatform.urls', 'jobs.api.urls', 'jobs.api.views', 'drf_spectacular.views')"
        " if m in sys.modules))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "jobplatform.settings.worker"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    path, loaded = out.stdout.strip().splitlines()[-2:]
    assert path.startswith("/jobs/") and path.endswith("/download")
    assert loaded == "[]"
