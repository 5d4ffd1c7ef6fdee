"""Production settings refuse to start when they would be unsafe, and say why."""

import subprocess
import sys

from django.conf import settings

PRODUCTION = {"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "0", "DATABASE_URL": "postgres://x@127.0.0.1/x",
              "JOBPLATFORM_ENV_FILE": ""}


def import_web_settings(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import jobplatform.settings.web"], env=env, capture_output=True,
                          text=True, cwd=settings.BASE_DIR)


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = import_web_settings(PRODUCTION)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_production_settings_refuse_the_default_s3_credentials():
    result = import_web_settings({**PRODUCTION, "DJANGO_SECRET_KEY": "a-real-secret"})
    assert result.returncode != 0
    assert "S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY are the development defaults" in result.stderr
