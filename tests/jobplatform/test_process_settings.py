"""Settings per process type, named by each entry point, and what each process loads.

What a worker's pool process loads is checked on a real worker (tests/jobs/test_execution.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.support.deadlines import within
from tests.support.diagnostic_processors import HEAVY_MODULES

pytestmark = pytest.mark.django_db


def python(code: str, settings_module: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=settings.BASE_DIR, timeout=within(60))


def test_the_web_settings_check_the_whole_site():
    code = ("import sys, django; django.setup()\n"
            "from django.core import management; management.call_command('check')\n"
            f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n")
    result = python(code, "jobplatform.settings.web")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == repr(sorted(HEAVY_MODULES))


@pytest.mark.parametrize(("module", "settings_module"), [("jobplatform.asgi", "jobplatform.settings.web"),
                                                         ("jobplatform.celery", "jobplatform.settings.worker")])
def test_an_entry_point_leaves_the_environment_as_it_found_it(module, settings_module):
    code = ("import os; before = dict(os.environ)\n"
            f"import {module}\n"
            "print(sorted(set(os.environ.items()) ^ set(before.items())))\n")
    result = python(code, settings_module)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
