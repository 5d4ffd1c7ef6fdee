"""Each entry point, started with nothing naming the settings, picks its own process type."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.support.deadlines import within

CODE = {
    "jobplatform.asgi": "import jobplatform.asgi",
    "celery -A jobplatform": "from celery.bin.celery import find_app; find_app('jobplatform')",
    "manage.py": ("import runpy, sys; sys.argv = ['manage.py', 'check']\n"
                  "runpy.run_path('manage.py', run_name='__main__')"),
}
EXPECTED = {"jobplatform.asgi": "jobplatform.settings.web", "celery -A jobplatform": "jobplatform.settings.worker",
            "manage.py": "jobplatform.settings.web"}


@pytest.mark.parametrize("entry_point", sorted(CODE))
def test_an_entry_point_without_django_settings_module_loads_its_own_settings(entry_point):
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    code = CODE[entry_point] + "\nfrom django.conf import settings; print(settings.SETTINGS_MODULE)\n"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            cwd=settings.BASE_DIR, timeout=within(60))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == EXPECTED[entry_point]
