"""bootstrap_admin: the generated password goes to its file (mode 600) and never to the output."""

import io
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("bootstrap_admin", *args, stdout=out)
    return out.getvalue()


def test_the_password_is_kept_in_a_private_file_and_never_printed(tmp_path):
    path = tmp_path / "admin-password"
    first = run("--username", "boss", "--password-file", str(path))
    again = run("--username", "boss", "--password-file", str(path))

    password = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert get_user_model().objects.get(username="boss").check_password(password)
    assert password not in first and password not in again
    assert str(path) in first and str(path) in again


def test_without_a_file_the_password_is_printed_once():
    first = run("--username", "solo")
    again = run("--username", "solo")

    password = first.rsplit(" ", 1)[-1].strip()
    assert get_user_model().objects.get(username="solo").check_password(password)
    assert password not in again
