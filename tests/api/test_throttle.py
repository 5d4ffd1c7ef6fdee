"""The per-user create and upload rate (jobs/api/throttles.py) against the real Redis, with
the throttle's clock set by the test: a burst of N, then one per period/N."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.cache import cache

from jobs.api.throttles import JobCreateThrottle
from jobs.uploads.throttles import UploadThrottle

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rates(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"job_create": "3/min", "upload": "1/min"}}
    cache.clear()
    yield
    cache.clear()


def ask(throttle_class, user, at: float) -> tuple[bool, float | None]:
    throttle = throttle_class()
    throttle.timer = lambda: at
    allowed = throttle.allow_request(SimpleNamespace(user=user), None)
    return allowed, throttle.wait()


def test_a_burst_of_the_rate_then_one_request_per_interval(user):
    t0 = 1_800_000_000.0
    assert [ask(JobCreateThrottle, user, t0)[0] for _ in range(3)] == [True, True, True]
    allowed, wait = ask(JobCreateThrottle, user, t0 + 1)
    assert not allowed and wait == pytest.approx(19.0)  # 60 s / 3: the next slot is at t0 + 20
    assert ask(JobCreateThrottle, user, t0 + 19.9)[0] is False
    assert ask(JobCreateThrottle, user, t0 + 20)[0] is True
    assert ask(JobCreateThrottle, user, t0 + 20.5) == (False, pytest.approx(19.5))
    # A quiet minute restores the whole burst, and no more than it.
    assert [ask(JobCreateThrottle, user, t0 + 200)[0] for _ in range(4)] == [True, True, True, False]


def test_each_user_and_each_scope_has_its_own_allowance(user, other_user):
    t0 = 1_800_000_000.0
    assert [ask(JobCreateThrottle, user, t0)[0] for _ in range(4)] == [True, True, True, False]
    assert ask(JobCreateThrottle, other_user, t0)[0] is True
    assert ask(UploadThrottle, user, t0) == (True, None)
    assert ask(UploadThrottle, user, t0) == (False, pytest.approx(60.0))


def test_without_a_rate_nothing_is_throttled(user, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"job_create": None}}
    assert all(ask(JobCreateThrottle, user, 1_800_000_000.0)[0] for _ in range(50))


def test_with_redis_unreachable_the_request_is_let_through(user, settings):
    """A create during a Redis restart must not fail on the rate check (the job is
    committed and the sweeper publishes it later); the cache is pointed at a closed port."""
    from jobplatform.devstack import free_port

    original = settings.CACHES
    settings.CACHES = {"default": {"BACKEND": "jobplatform.cache.SharedRedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    try:
        assert all(ask(JobCreateThrottle, user, 1_800_000_000.0)[0] for _ in range(5))
    finally:
        settings.CACHES = original  # before the fixture's cache.clear()
