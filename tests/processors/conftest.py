"""Processor tests need no database, broker or object store: they run processors on
processors.testing.MemoryContext. The project-wide tests/conftest.py has a session-wide
autouse fixture that sets up buckets (and so the database); shadowing it here keeps
this folder runnable on its own, with `-p no:django`, and fast."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def buckets():
    """No object storage is needed for processor tests."""
    return
