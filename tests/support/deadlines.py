"""Slack for deadlines: how long a test waits for something that should happen.

A deadline is not a timing: the waits return as soon as the job reaches its state or the
process is ready, so slack costs nothing when things work. The numbers in the tests are
sized for a developer's machine; a shared CI machine has run the whole suite 10x slower
than that, so every wait gets SLACK times its number (TEST_DEADLINE_SLACK, default 5).
"""

from __future__ import annotations

import os

SLACK = float(os.environ.get("TEST_DEADLINE_SLACK", "5"))


def within(seconds: float) -> float:
    """The deadline for something that takes up to `seconds` on a developer's machine."""
    return seconds * SLACK
