"""Abuse of the write paths and of sign-in: the upload form and the API share one allowance
per user and scope, every API write is throttled, and sign-ins are locked out per IP and
per username (django-axes) before any password is hashed."""

from __future__ import annotations

import concurrent.futures
import os
import re
import statistics
import threading
import time
import unicodedata
import uuid

import httpx
import pytest
from axes.utils import reset
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

import storage
from jobs.models import DeadLetter, Job
from tests.factories import CSV, job_in_state
from tests.support.pause import stopped

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"  # tests/conftest.py make_user's


def rates(settings, **scopes: str) -> None:
    """Lowered rates for this test, and counters of its own (a fresh cache prefix)."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
                                                          **scopes}}
    settings.RATELIMIT_CACHE_PREFIX = f"rl-test-{uuid.uuid4().hex}:"


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def form(key: str | None = None, file=None) -> dict:
    data = {"job_type": "CSV_ROW_COUNT"}
    if key:
        data.update(object_key=key, object_name="people.csv")
    if file is not None:
        data["file"] = file
    return data


def api_error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def assert_throttled_page(response) -> int:
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    wait = int(response["Retry-After"])
    assert wait >= 1
    assert f"try again in {wait} seconds" in response.content.decode()
    return wait


# --- the upload form and the API share the allowance -------------------------------------------

def test_140_form_posts_over_a_lowered_rate_are_refused_and_share_the_apis_count(client, user, upload, settings):
    rates(settings, job_create="30/day")
    key = upload(user, CSV, "people.csv")
    api = token_client(user)
    assert [api.post("/api/v1/jobs/", {"job_type": "CSV_ROW_COUNT", "input_object_key": key},
                     format="json").status_code for _ in range(10)] == [201] * 10
    client.force_login(user)

    answers = [client.post("/upload/", form(key)) for _ in range(140)]

    statuses = [r.status_code for r in answers]
    assert statuses == [302] * 20 + [429] * 120
    refused = answers[-1]
    assert_throttled_page(refused)
    # The object the page had already uploaded is still named by the page, to post again.
    assert f'value="{key}"' in refused.content.decode()
    assert storage.head(storage.input_bucket(), key).size == len(CSV)
    # The API now meets the count the form used up.
    response = api.post("/api/v1/jobs/", {"job_type": "CSV_ROW_COUNT", "input_object_key": key}, format="json")
    assert response.status_code == 429
    assert api_error(response)["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1
    assert Job.objects.filter(owner=user).count() == 30


def test_a_refused_file_post_stores_nothing_and_the_upload_allowance_is_shared_with_the_api(client, user,
                                                                                           settings):
    rates(settings, upload="2/day")
    prefix = storage.owner_upload_prefix(user.pk)
    client.force_login(user)
    first = client.post("/upload/", form(file=SimpleUploadedFile("a.csv", CSV)))
    assert first.status_code == 302
    stored = storage.list_keys(storage.input_bucket(), prefix)
    assert len(stored) == 1

    # The direct-upload create spends the second upload of the allowance ...
    api = token_client(user)
    created = api.post("/api/v1/uploads/multipart/", {"filename": "b.csv", "size": 10}, format="json")
    assert created.status_code == 201, created.content
    api.delete(f"/api/v1/uploads/multipart/{created.json()['upload_id']}")
    # ... so the form's next file is refused before a byte of it is stored.
    refused = client.post("/upload/", form(file=SimpleUploadedFile("c.csv", CSV)))
    assert_throttled_page(refused)
    assert storage.list_keys(storage.input_bucket(), prefix) == stored
    assert Job.objects.filter(owner=user).count() == 1


def test_a_refused_post_of_an_uploaded_object_creates_its_job_when_posted_again_after_the_wait(client, user,
                                                                                              upload, settings):
    rates(settings, job_create="1/2s")
    client.force_login(user)
    keys = [upload(user, CSV, f"p{i}.csv") for i in range(3)]
    # Windows are fixed, so a first post near a window's end may be followed by an allowed one.
    answers = [client.post("/upload/", form(key)) for key in keys]
    refused_at = next(i for i, r in enumerate(answers) if r.status_code == 429)
    wait = assert_throttled_page(answers[refused_at])
    assert wait <= 2

    time.sleep(wait)
    again = client.post("/upload/", form(keys[refused_at]))
    assert again.status_code == 302
    assert Job.objects.filter(owner=user, input_key=keys[refused_at]).count() == 1


# --- every API write is throttled -------------------------------------------------------------

API_WRITES = {
    "job_cancel": ("job_action", "post", lambda: f"/api/v1/jobs/{uuid.uuid4()}/cancel"),
    "job_retry": ("job_action", "post", lambda: f"/api/v1/jobs/{uuid.uuid4()}/retry"),
    "dead_letter_replay": ("job_action", "post", lambda: "/api/v1/dead-letters/987654/replay"),
    "job_create": ("job_create", "post", lambda: "/api/v1/jobs/"),
    "multipart_create": ("upload", "post", lambda: "/api/v1/uploads/multipart/"),
    "multipart_sign_parts": ("upload_part", "post", lambda: f"/api/v1/uploads/multipart/{uuid.uuid4()}/parts"),
    "multipart_complete": ("upload_part", "post", lambda: f"/api/v1/uploads/multipart/{uuid.uuid4()}/complete"),
    "multipart_abort": ("upload_part", "delete", lambda: f"/api/v1/uploads/multipart/{uuid.uuid4()}"),
}


@pytest.mark.parametrize("endpoint", list(API_WRITES))
def test_every_api_write_is_throttled_with_429_in_the_error_shape_and_retry_after(endpoint, staff_user,
                                                                                  settings):
    scope, method, path = API_WRITES[endpoint]
    rates(settings, **{scope: "2/day"})
    api = token_client(staff_user)
    # The throttle counts attempts before the view runs, whatever they then answer (404, 400).
    first = [getattr(api, method)(path(), {}, format="json").status_code for _ in range(2)]
    assert 429 not in first
    response = getattr(api, method)(path(), {}, format="json")
    assert response.status_code == 429
    error = api_error(response)
    assert error["code"] == "throttled"
    assert error["details"]["retry_after"] == int(response["Retry-After"]) >= 1


@pytest.mark.parametrize("action", ["cancel", "retry", "replay"])
def test_the_pages_job_actions_share_the_apis_action_allowance(client, staff_user, upload, settings, action):
    rates(settings, job_action="2/day")
    job = job_in_state(staff_user, "CREATED", input_key=upload(staff_user, CSV))
    letter = DeadLetter.objects.create(job=job, reason="test", died_at=timezone.now())
    page = {"cancel": f"/jobs/{job.id}/cancel", "retry": f"/jobs/{job.id}/retry",
            "replay": f"/dead-letters/{letter.pk}/replay"}[action]
    client.force_login(staff_user)
    api = token_client(staff_user)
    assert api.post(f"/api/v1/jobs/{uuid.uuid4()}/cancel").status_code == 404
    assert client.post(page).status_code == 302
    assert_throttled_page(client.post(page))
    assert api.post(f"/api/v1/jobs/{uuid.uuid4()}/retry").status_code == 429


# --- sign-in lock-out ---------------------------------------------------------------------------

class CountingHasher(MD5PasswordHasher):
    """Counts the passwords hashed: a lock-out must answer without hashing one."""

    algorithm = "counting_md5"
    hashed = 0

    def encode(self, password, salt):
        type(self).hashed += 1
        return super().encode(password, salt)


@pytest.fixture
def logins(settings, make_user):
    """Short cool-offs, hashes counted, and addresses and usernames of this test's own."""
    settings.LOGIN_COOLOFF_SECONDS = 1
    settings.PASSWORD_HASHERS = ["tests.hostile.test_throttles.CountingHasher"]
    suffix = uuid.uuid4().hex[:8]
    used_ips: list[str] = []
    names: list[str] = []

    class Logins:
        limit = settings.AXES_FAILURE_LIMIT

        @staticmethod
        def ip() -> str:
            used_ips.append(f"10.{len(used_ips) % 250}.{int(suffix[:2], 16)}.{int(suffix[2:4], 16)}")
            return used_ips[-1]

        @staticmethod
        def user(staff: bool = False):
            names.append(f"u{len(names)}-{suffix}")
            return make_user(names[-1], staff=staff)

    CountingHasher.hashed = 0
    yield Logins
    for ip in used_ips:
        reset(ip=ip)
    for name in names:
        reset(username=name)


def sign_in(client, username: str, password: str, ip: str, path: str = "/login/"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def assert_locked_out(response) -> int:
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    return int(response["Retry-After"])


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_wrong_passwords_for_one_username_lock_it_out_from_any_address_even_with_the_right_one(client, logins,
                                                                                            path):
    user = logins.user(staff=True)
    answers = [sign_in(client, user.username, "wrong", logins.ip(), path) for _ in range(logins.limit)]
    assert [r.status_code for r in answers[:-1]] == [200] * (logins.limit - 1)
    assert assert_locked_out(answers[-1]) >= 1

    hashed = CountingHasher.hashed
    assert_locked_out(sign_in(client, user.username, PASSWORD, logins.ip(), path))
    assert CountingHasher.hashed == hashed  # refused before the password was hashed
    assert client.get("/").status_code == 302  # not signed in


def test_wrong_passwords_from_one_address_lock_it_out_for_every_username(client, logins):
    ip = logins.ip()
    for _ in range(logins.limit):
        assert sign_in(client, f"nobody-{uuid.uuid4().hex}", "wrong", ip).status_code in (200, 429)
    user = logins.user()
    hashed = CountingHasher.hashed
    assert_locked_out(sign_in(client, user.username, PASSWORD, ip))
    assert CountingHasher.hashed == hashed
    # Another address signs the same user in.
    assert sign_in(client, user.username, PASSWORD, logins.ip()).status_code == 302


def test_a_successful_sign_in_clears_the_failures(client, logins):
    user, ip = logins.user(), logins.ip()
    for _ in range(2):
        for _ in range(logins.limit - 1):
            assert sign_in(client, user.username, "wrong", ip).status_code == 200
        assert sign_in(client, user.username, PASSWORD, ip).status_code == 302
        client.logout()
    assert [sign_in(client, user.username, "wrong", ip).status_code for _ in range(logins.limit)][-1] == 429


def test_the_right_password_works_again_after_the_cool_off_which_backs_off(client, logins):
    user, ip = logins.user(), logins.ip()
    for _ in range(logins.limit):
        sign_in(client, user.username, "wrong", ip)
    waits = [assert_locked_out(sign_in(client, user.username, PASSWORD, ip)) for _ in range(3)]
    assert waits == [2, 4, 8]  # each try while locked out doubles the cool-off (1 s here)

    time.sleep(waits[-1] + 0.5)
    assert sign_in(client, user.username, PASSWORD, ip).status_code == 302


def form_username(name: str) -> str:
    """The username the sign-in form passes on (Django's UsernameField): stripped, NFKC."""
    return unicodedata.normalize("NFKC", name.strip())


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(username=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=150)
       .filter(lambda name: "\x00" not in name and 0 < len(form_username(name)) <= 150))
def test_any_username_is_counted_and_locked_out_without_a_server_error(client, logins, username):
    ip = logins.ip()
    answers = [sign_in(client, username, "wrong", ip).status_code for _ in range(logins.limit)]
    assert answers == [200] * (logins.limit - 1) + [429]
    reset(username=form_username(username))


def test_spellings_of_one_username_share_its_count(client, logins):
    """Spaces around it and compatibility forms sign in as the same user, so they count as it."""
    user = logins.user()
    spellings = [f" {user.username}", f"{user.username} ", unicodedata.normalize("NFKD", user.username),
                 "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in user.username)]  # full-width
    assert {form_username(name) for name in spellings} == {user.username}
    answers = [sign_in(client, name, "wrong", logins.ip()).status_code for name in spellings]
    answers.append(sign_in(client, user.username, "wrong", logins.ip()).status_code)
    assert answers == [200] * (logins.limit - 1) + [429]
    # And they back off as the name does, from any address.
    assert [assert_locked_out(sign_in(client, name, PASSWORD, logins.ip())) for name in spellings[:2]] == [2, 4]


def test_the_sign_in_page_still_answers_while_locked_out(client, logins):
    user, ip = logins.user(), logins.ip()
    for _ in range(logins.limit):
        sign_in(client, user.username, "wrong", ip)
    page = client.get("/login/", REMOTE_ADDR=ip)
    assert page.status_code == 200 and b"Sign in" in page.content


def test_while_redis_is_away_a_sign_in_is_503_not_let_through_uncounted(client, logins):
    user, ip = logins.user(), logins.ip()
    with stopped("redis"):
        for password in (PASSWORD, "wrong"):
            response = sign_in(client, user.username, password, ip)
            assert response.status_code == 503
            assert "Signing in is unavailable" in response.content.decode()
            assert int(response["Retry-After"]) >= 1
    assert client.get("/").status_code == 302  # not signed in
    assert sign_in(client, user.username, PASSWORD, ip).status_code == 302


# --- against the real server ---------------------------------------------------------------------

def web_sign_in(http: httpx.Client, username: str, password: str, path: str = "/login/") -> httpx.Response:
    page = http.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return http.post(path, data={"username": username, "password": password, "csrfmiddlewaretoken": token},
                     headers={"Referer": f"{http.base_url}{path}"})


@pytest.fixture
def loopback_reset():
    # The real server sees every client as 127.0.0.1, and other tests sign in (and fail to)
    # from there too: counts of theirs must not lock this one out early, nor this one's them.
    reset(ip="127.0.0.1")
    yield
    reset(ip="127.0.0.1")


def test_the_lock_out_holds_on_the_real_server_for_both_sign_in_pages(start_web_server, make_user, loopback_reset):
    # Cool-offs of 3 s, capped at 4: long enough that a loaded machine's gaps between tries
    # do not let a count expire, short enough to wait out.
    server = start_web_server(LOGIN_COOLOFF_SECONDS="3", LOGIN_COOLOFF_MAX_SECONDS="4", LOGIN_FAILURE_LIMIT="3")
    user = make_user(f"real-{uuid.uuid4().hex[:8]}", staff=True)
    with server.client() as http:
        answers = [web_sign_in(http, user.username, "wrong") for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 429], [r.text[-600:] for r in answers]
        assert "Too many failed sign-ins" in answers[-1].text
        for path in ("/login/", "/admin/login/"):
            locked = web_sign_in(http, user.username, PASSWORD, path)
            assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
            assert int(locked.headers["Retry-After"]) >= 1
        wait = int(locked.headers["Retry-After"])
        time.sleep(wait + 0.5)
        signed_in = web_sign_in(http, user.username, PASSWORD, "/admin/login/")
        assert signed_in.status_code == 302, signed_in.text[:500]
    reset(username=user.username)


def test_sign_ins_beyond_the_concurrent_cap_are_refused_before_hashing(start_web_server, loopback_reset):
    """Real PBKDF2 hashing, so that the posts overlap; the lock-out is set out of the way."""
    server = start_web_server(DJANGO_INSECURE_FAST_PASSWORD_HASHING="0", LOGIN_MAX_CONCURRENT="1",
                              LOGIN_FAILURE_LIMIT="1000")
    count = 8
    start = threading.Barrier(count)

    def one(i: int) -> httpx.Response:
        with server.client() as http:
            page = http.get("/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            start.wait(30)
            return http.post("/login/", data={"username": f"nobody-{i}", "password": "wrong",
                                              "csrfmiddlewaretoken": token})

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(one, range(count)))
    busy = [r for r in answers if r.status_code == 429]
    assert {r.status_code for r in answers} == {200, 429}
    assert all("Too many sign-ins at once" in r.text and r.headers["Retry-After"] == "1" for r in busy)


# --- measurement: 64 parallel wrong sign-ins ---------------------------------------------------------

def api_latencies(base_url: str, token: str, count: int, stop=None) -> tuple[list[float], list[int]]:
    times, statuses = [], []
    with httpx.Client(base_url=base_url, timeout=600, headers={"Authorization": f"Token {token}"}) as http:
        while len(times) < count and not (stop and stop.done()):
            started = time.perf_counter()
            statuses.append(http.get("/api/v1/jobs/").status_code)
            times.append(time.perf_counter() - started)
    return times, statuses


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def storm(base_url: str, count: int) -> tuple[float, dict[int, int]]:
    """`count` wrong sign-ins at once, each a fresh client; (seconds until all answered, statuses)."""
    def one(i: int) -> int:
        with httpx.Client(base_url=base_url, timeout=600) as http:
            return web_sign_in(http, f"nobody-{i}-{uuid.uuid4().hex[:6]}", "wrong-password").status_code

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(one, range(count)))
    return time.perf_counter() - started, {s: statuses.count(s) for s in set(statuses)}


MEASURED = {"unprotected": {"LOGIN_LOCKOUT_ENABLED": "0", "LOGIN_MAX_CONCURRENT": "64"},
            "lockout-only": {"LOGIN_MAX_CONCURRENT": "64"},
            "defaults": {}}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MEASURED))
def test_measure_64_parallel_wrong_sign_ins_and_api_latency(start_web_server, user, loopback_reset, mode):
    """Prints the numbers (run with -s); it asserts only that every sign-in was answered.
    The server hashes with Django's real PBKDF2, as a deployment does."""
    server = start_web_server(DJANGO_INSECURE_FAST_PASSWORD_HASHING="0", **MEASURED[mode])
    token = Token.objects.create(user=user).key
    api_latencies(server.url, token, 5)  # warm-up
    before, _ = api_latencies(server.url, token, 30)
    cpu_before = cpu_seconds(server.proc.pid)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        attack = pool.submit(storm, server.url, 64)
        during_future = pool.submit(api_latencies, server.url, token, 10_000, attack)
        elapsed, statuses = attack.result()
        during, during_statuses = during_future.result()
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    assert sum(statuses.values()) == 64
    # A second wave, as a persistent attacker sends: with the lock-out in place, none is hashed.
    cpu_before = cpu_seconds(server.proc.pid)
    elapsed2, statuses2 = storm(server.url, 64)
    cpu2 = cpu_seconds(server.proc.pid) - cpu_before

    def ms(values):
        return f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"
    print(f"\n[login storm, {mode}] 64 wrong sign-ins answered in "
          f"{elapsed:.2f} s, statuses {statuses}, server CPU {cpu:.1f} s; API GET before: {ms(before)}; "
          f"during ({len(during)} GETs, {sum(s != 200 for s in during_statuses)} not 200): "
          f"{ms(during)}; second wave answered in {elapsed2:.2f} s, statuses {statuses2}, server CPU {cpu2:.1f} s")
