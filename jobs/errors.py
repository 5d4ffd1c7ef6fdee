"""The jobs domain's errors: what services raise and views turn into a clear 4xx."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Job


class JobError(Exception):
    """A request about a job that cannot be done; views turn it into a 4xx with this message."""

    def __init__(self, message: str, *, code: str = "invalid", status: int = 400, details: dict | None = None):
        super().__init__(message)
        self.message, self.code, self.status, self.details = message, code, status, details or {}


class TransitionRefused(Exception):
    """The job is not in a state from which this move is allowed (or was changed meanwhile)."""

    def __init__(self, message: str, *, job: Job | None = None):
        super().__init__(message)
        self.job = job
