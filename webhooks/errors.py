"""The webhooks domain's error: what its services raise and its views turn into a clear 4xx."""

from __future__ import annotations


class WebhookError(Exception):
    def __init__(self, message: str, *, code: str = "invalid", status: int = 400, details: dict | None = None):
        super().__init__(message)
        self.message, self.code, self.status, self.details = message, code, status, details or {}
