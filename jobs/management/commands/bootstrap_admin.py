import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first staff account (admin) if none exists, and say how to sign in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password-file", help="where the generated password is kept (mode 600)")

    def handle(self, *args, username, password_file, **options):
        User = get_user_model()
        path = Path(password_file) if password_file else None
        if not User.objects.filter(username=username).exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            if path:
                path.write_text(password + "\n")
                path.chmod(0o600)
            self.stdout.write(f"created staff account {username!r}")
        else:
            password = path.read_text().strip() if path and path.exists() else None
        shown = password or "(unchanged; reset with: manage.py changepassword admin)"
        self.stdout.write(f"sign in as {username!r} with password {shown}")
