"""The per-user create and upload rates (jobs/api/throttles.py) against the real Redis:
N requests in a window, then refusals that say how long to wait."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest

from jobs.api.throttles import JobActionThrottle, JobCreateThrottle, UploadPartThrottle, refusal
from jobs.uploads.throttles import UploadThrottle

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rates(settings):
    # A day's window: the test cannot straddle a window's end. A prefix of its own: counts
    # of another run (a Redis from the environment) cannot leak in.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"job_create": "3/day", "upload": "1/day",
                                                          "job_action": "2/day", "upload_part": "2/day"}}
    settings.RATELIMIT_CACHE_PREFIX = f"rl-test-{uuid.uuid4().hex}:"


def ask(throttle_class, user) -> tuple[bool, float | None]:
    throttle = throttle_class()
    allowed = throttle.allow_request(SimpleNamespace(user=user), None)
    return allowed, throttle.wait()


def test_the_rate_is_allowed_then_refused_with_the_seconds_until_the_window_ends(user):
    assert [ask(JobCreateThrottle, user) for _ in range(3)] == [(True, None)] * 3
    allowed, wait = ask(JobCreateThrottle, user)
    assert not allowed
    assert 1 <= wait <= 86400


def test_each_user_and_each_scope_has_its_own_allowance(user, other_user):
    assert [ask(JobCreateThrottle, user)[0] for _ in range(4)] == [True, True, True, False]
    assert ask(JobCreateThrottle, other_user)[0] is True
    assert ask(UploadThrottle, user) == (True, None)
    assert ask(UploadThrottle, user)[0] is False


def test_without_a_rate_nothing_is_throttled(user, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"job_create": None}}
    assert all(ask(JobCreateThrottle, user)[0] for _ in range(50))


def test_with_redis_unreachable_the_request_is_let_through(user, settings):
    """A create during a Redis restart must not fail on the rate check (the job is
    committed and the sweeper publishes it later); the cache is pointed at a closed port."""
    from devstack.servers import free_port

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    assert all(ask(JobCreateThrottle, user)[0] for _ in range(5))


def test_actions_and_part_calls_have_allowances_of_their_own(user):
    assert [ask(JobCreateThrottle, user)[0] for _ in range(4)] == [True, True, True, False]
    assert [ask(JobActionThrottle, user)[0] for _ in range(3)] == [True, True, False]
    assert [ask(UploadPartThrottle, user)[0] for _ in range(3)] == [True, True, False]


def test_refusal_counts_each_scope_in_turn_and_stops_at_the_first_that_refuses(user):
    request = SimpleNamespace(user=user)
    assert refusal(request, JobCreateThrottle, UploadThrottle) is None
    # The upload allowance (1) is spent: refused, after the create was counted.
    assert 1 <= refusal(request, JobCreateThrottle, UploadThrottle) <= 86400
    # The upload scope refused first here, so the create count did not move: one left.
    assert refusal(request, UploadThrottle, JobCreateThrottle) is not None
    assert refusal(request, JobCreateThrottle) is None
    assert refusal(request, JobCreateThrottle) is not None


def test_waiting_the_seconds_a_refusal_names_is_always_enough(user, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"job_create": "1/2s"}}
    for _ in range(3):
        while ask(JobCreateThrottle, user)[0]:
            pass  # spend the window's allowance
        allowed, wait = ask(JobCreateThrottle, user)
        assert not allowed and 1 <= wait <= 2
        time.sleep(wait)
        assert ask(JobCreateThrottle, user)[0] is True
