"""A real Uvicorn server for the upload endpoints (they bypass Django's request handling,
so only a real ASGI server shows how they behave), and credentials for it."""

from __future__ import annotations

import httpx
import pytest
from django.test import Client
from django.utils.crypto import get_random_string
from rest_framework.authtoken.models import Token

import storage
from storage import multipart
from tests.conftest import WebServer

MIB = 1024 * 1024
# Small enough to cross quickly in a test, above one 8 MiB part so multipart uploads happen.
TEST_UPLOAD_MAX_BYTES = 24 * MIB


@pytest.fixture(scope="session")
def web(django_db_setup, buckets, tmp_path_factory):
    server = WebServer(tmp_path_factory.mktemp("web"), {"UPLOAD_MAX_BYTES": str(TEST_UPLOAD_MAX_BYTES)})
    yield server
    server.stop()


@pytest.fixture
def start_web(start_web_server):
    """Another server with its own settings (e.g. a low upload rate); stopped after the test."""

    def start(**env: str) -> WebServer:
        return start_web_server(UPLOAD_MAX_BYTES=str(TEST_UPLOAD_MAX_BYTES), **env)

    return start


def token_headers(user) -> dict:
    token, _ = Token.objects.get_or_create(user=user)
    return {"Authorization": f"Token {token.key}"}


@pytest.fixture
def token(user) -> dict:
    return token_headers(user)


@pytest.fixture
def signed_in_cookies(user) -> dict:
    """A real session (as after signing in) and a CSRF cookie, as a browser holds them."""
    client = Client()
    client.force_login(user)
    return {"sessionid": client.cookies["sessionid"].value, "csrftoken": get_random_string(32)}


def open_uploads(user) -> list[dict]:
    return multipart.list_open(storage.input_bucket(), storage.owner_upload_prefix(user.pk))


def stored_keys(user) -> list[str]:
    return storage.list_keys(storage.input_bucket(), storage.owner_upload_prefix(user.pk))


def error_of(response: httpx.Response) -> dict:
    """The error body, after checking it is the API's one shape (JSON, never HTML)."""
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]
