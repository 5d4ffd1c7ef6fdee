"""The API's token authentication: DRF's."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        # PostgreSQL cannot compare a string holding NUL (the lookup would be a 500); no
        # token has one, so it is an invalid token like any other unknown key.
        if "\x00" in key:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        return super().authenticate_credentials(key)
