"""The API's token authentication: the same answers as DRF's, from its one-statement lookup."""

from __future__ import annotations

import pytest
from rest_framework.authentication import TokenAuthentication as DRFTokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from jobs.api.authentication import TokenAuthentication

from .conftest import error_of

pytestmark = pytest.mark.django_db
URL = "/api/v1/jobs/"


def test_a_token_resolves_to_the_same_user_and_token_as_drfs_lookup(user):
    key = Token.objects.create(user=user).key
    user.first_name, user.email = "Zoë", "zoe@example.org"
    user.save()

    ours = TokenAuthentication().authenticate_credentials(key)
    theirs = DRFTokenAuthentication().authenticate_credentials(key)

    for mine, drf in zip(ours, theirs, strict=True):
        assert type(mine) is type(drf)
        fields = type(drf)._meta.concrete_fields
        assert [getattr(mine, f.attname) for f in fields] == [getattr(drf, f.attname) for f in fields]
    assert ours[1].user is ours[0] and not ours[0]._state.adding


def test_an_inactive_users_token_is_refused_as_drf_refuses_it(client, user):
    key = Token.objects.create(user=user).key
    user.is_active = False
    user.save()

    with pytest.raises(AuthenticationFailed, match="User inactive or deleted"):
        TokenAuthentication().authenticate_credentials(key)
    response = client.get(URL, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


@pytest.mark.parametrize("key", ["", "x" * 10_000, "' OR 1=1 --", "nul\x00byte", "ünïcode", "%s"])
def test_hostile_keys_are_invalid_tokens(user, key):
    Token.objects.create(user=user)
    with pytest.raises(AuthenticationFailed, match="Invalid token"):
        TokenAuthentication().authenticate_credentials(key)


def test_the_api_answers_401_for_a_malformed_header(client, user):
    Token.objects.create(user=user)
    for header in ("Token", "Token a b", "Token \x00"):
        response = client.get(URL, HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
