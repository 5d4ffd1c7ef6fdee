"""The API's token authentication (DRF's): who gets in, and the 401s for everyone else."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token

from .conftest import error_of

pytestmark = pytest.mark.django_db
URL = "/api/v1/jobs/"


def test_a_valid_token_lists_the_owners_jobs(client, user):
    key = Token.objects.create(user=user).key
    response = client.get(URL, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_an_inactive_users_token_is_refused(client, user):
    key = Token.objects.create(user=user).key
    user.is_active = False
    user.save()

    response = client.get(URL, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_without_credentials_the_answer_is_401_with_a_token_challenge(client):
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("key", ["x" * 10_000, "' OR 1=1 --", "nul\x00byte", "\x00", "ünïcode", "%s"])
def test_hostile_keys_are_invalid_tokens(client, user, key):
    Token.objects.create(user=user)
    response = client.get(URL, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_the_api_answers_401_for_a_malformed_header(client, user):
    Token.objects.create(user=user)
    for header in ("Token", "Token a b", "Token \x00"):
        response = client.get(URL, HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
