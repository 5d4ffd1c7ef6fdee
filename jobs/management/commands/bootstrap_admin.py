import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Create the first staff account (admin) if none exists. With --password-file the generated "
            "password goes only to that file (mode 600); without it, it is printed once.")

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password-file", help="where the generated password is kept (mode 600)")

    def handle(self, *args, username, password_file, **options):
        User = get_user_model()
        path = Path(password_file) if password_file else None
        if User.objects.filter(username=username).exists():
            where = f"its password is in {path}" if path and path.exists() else \
                f"reset its password with: manage.py changepassword {username}"
            self.stdout.write(f"staff account {username!r} exists; {where}")
            return
        password = secrets.token_urlsafe(12)
        if path:
            # Created with mode 600: the password is never readable by others, not even briefly.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(password + "\n")
        User.objects.create_superuser(username=username, email="", password=password)
        if path:
            self.stdout.write(f"created staff account {username!r}; its password is in {path}")
        else:
            self.stdout.write(f"created staff account {username!r} with password {password}")
