"""What Django's debug page may show (DEBUG on, as `make run` runs): never a credential.

Django's SafeExceptionReporterFilter hides settings whose names look secret. This filter
also hides every setting named like a URL, an address or an ID, removes the user and
password from any URL it shows (settings, request META, cookies, frame variables), and
cleanses frame variables even with DEBUG on. The reporter then replaces every known
credential (and every configured service URL) wherever it still appears on the page:
in the exception's message, in a frame variable's repr, anywhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from django.conf import settings
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute
# Names whose values are never shown. URL but not URLCONF: ROOT_URLCONF is a module path.
HIDDEN_NAMES = re.compile(
    r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CREDENTIAL|URL(?!CONF)|DSN|LOCATION|ADDRESS|_ID$",
    re.I)
# scheme://user:password@ -> scheme://********@
URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/?#@\s'\"<>]*@", re.I)
SHORTEST_SECRET = 8  # shorter values ("1", "s3") would blank out ordinary words


def _named_values(name: str, value) -> Iterator[tuple[str, str]]:
    """(name, string) pairs of a setting, dicts and lists walked with the names inside them."""
    if isinstance(value, str):
        yield name, str(value)  # a lazy str subclass becomes the text it stands for
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _named_values(str(key), inner)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            yield from _named_values(name, inner)


def known_secrets() -> list[str]:
    """Values that must not appear on the page, longest first (a URL before its password)."""
    found: set[str] = set()
    sources = [(name, getattr(settings, name)) for name in dir(settings) if name.isupper()]
    sources += list(os.environ.items())
    for top, value in sources:
        for name, text in _named_values(top, value):
            if HIDDEN_NAMES.search(name) or HIDDEN_NAMES.search(top):
                found.add(text.strip())
            for match in URL_USERINFO.finditer(text):
                user, _, password = text[match.end("scheme"):match.end() - 1].partition(":")
                found.add(password or user)  # a lone user part is often a token
    return sorted((s for s in found if len(s) >= SHORTEST_SECRET), key=len, reverse=True)


def scrub(value, secrets: list[str]):
    """The value with URL credentials and known secrets replaced, in every string it holds."""
    if isinstance(value, str):
        value = str(value)
        for secret in secrets:  # whole URLs first, then what is left of any other URL
            value = value.replace(secret, SUBSTITUTE)
        return URL_USERINFO.sub(rf"\g<scheme>{SUBSTITUTE}@", value)
    if isinstance(value, dict):
        return {key: scrub(inner, secrets) for key, inner in value.items()}
    if isinstance(value, list):
        return [scrub(inner, secrets) for inner in value]
    if isinstance(value, tuple):
        return tuple(scrub(inner, secrets) for inner in value)
    return value


class SecretHidingFilter(SafeExceptionReporterFilter):
    hidden_settings = HIDDEN_NAMES

    def is_active(self, request):
        # Django turns cleansing of sensitive variables off under DEBUG; the dev stack's
        # debug page is reachable by anyone who can reach the server, so keep it on.
        return True

    def get_safe_settings(self):
        return scrub(super().get_safe_settings(), known_secrets())

    def get_safe_request_meta(self, request):
        return scrub(super().get_safe_request_meta(request), known_secrets())

    def get_safe_cookies(self, request):
        return scrub(super().get_safe_cookies(request), known_secrets())

    def get_traceback_frame_variables(self, request, tb_frame):
        secrets = known_secrets()
        cleansed = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if self.hidden_settings.search(name):
                value = self.cleansed_substitute
            elif not isinstance(value, (str, dict, list, tuple)):
                try:
                    shown = repr(value)
                except Exception:  # noqa: BLE001  (the page shows what the reporter can)
                    shown = ""
                if scrub(shown, secrets) != shown:
                    value = scrub(shown, secrets)  # shown as the cleansed repr, in quotes
            cleansed.append((name, scrub(value, secrets)))
        return cleansed


class SecretHidingReporter(ExceptionReporter):
    """Scrubs the whole page's data: the exception's message can name a URL too."""

    def get_traceback_data(self):
        return scrub(super().get_traceback_data(), known_secrets())
