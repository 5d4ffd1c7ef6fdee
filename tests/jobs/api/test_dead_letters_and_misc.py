"""Dead letters (staff only), job types, the schema and docs, and errors in the API's shape."""

from __future__ import annotations

import pytest
from django.core.exceptions import DisallowedHost, PermissionDenied, RequestDataTooBig, TooManyFieldsSent
from django.test import RequestFactory

from jobs.api.errors import exception_handler, handler400, handler403, handler404, handler500
from jobs.models import DeadLetter, JobState

from .conftest import error_of

pytestmark = pytest.mark.django_db
LETTERS = "/api/v1/dead-letters/"


def test_staff_list_dead_letters_with_reason_traceback_and_owner(staff_api, user, make_job):
    job = make_job(user, JobState.DEAD)
    body = staff_api.get(LETTERS).json()
    assert len(body["results"]) == 1 and body["next"] is None
    letter = body["results"][0]
    assert letter["job_id"] == str(job.id) and letter["owner"] == user.username
    assert letter["reason"] == "attempts exhausted" and letter["traceback"] == "Traceback: boom"
    assert letter["pending"] is True and letter["replay_count"] == 0


def test_dead_letters_are_403_for_non_staff_and_401_for_anonymous(api, client, user, make_job):
    job = make_job(user, JobState.DEAD)
    letter = DeadLetter.objects.get(job=job)
    for response in (api.get(LETTERS), api.post(f"{LETTERS}{letter.pk}/replay")):
        assert response.status_code == 403 and error_of(response)["code"] == "permission_denied"
    for response in (client.get(LETTERS), client.post(f"{LETTERS}{letter.pk}/replay")):
        assert response.status_code == 401
    assert DeadLetter.objects.get(pk=letter.pk).replay_count == 0


def test_replay_queues_the_dead_job_once_and_refuses_a_second_time(staff_api, user, make_job):
    job = make_job(user, JobState.DEAD)
    letter = DeadLetter.objects.get(job=job)
    response = staff_api.post(f"{LETTERS}{letter.pk}/replay")
    assert response.status_code == 200
    assert response.json()["state"] == "QUEUED"
    letter.refresh_from_db()
    assert letter.replay_count == 1 and letter.replayed_at
    again = staff_api.post(f"{LETTERS}{letter.pk}/replay")
    assert again.status_code == 409 and "not DEAD" in error_of(again)["message"]
    assert staff_api.get(LETTERS, {"pending": "true"}).json()["results"] == []
    assert len(staff_api.get(LETTERS).json()["results"]) == 1


@pytest.mark.parametrize("pk", ["999999", str(2**63), "99999999999999999999999"])
def test_replay_of_an_unknown_dead_letter_is_404(staff_api, pk):
    response = staff_api.post(f"{LETTERS}{pk}/replay")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_dead_letter_list_with_a_bad_pending_filter_is_400(staff_api):
    assert staff_api.get(LETTERS, {"pending": "maybe"}).status_code == 400


def test_job_types_lists_every_processor_with_its_params_schema(api):
    types = {t["job_type"]: t for t in api.get("/api/v1/job-types/").json()}
    assert {"CSV_ROW_COUNT", "JSON_CANONICALIZE"} <= set(types)
    csv = types["CSV_ROW_COUNT"]
    assert csv["title"] and csv["description"] and csv["version"]
    assert csv["params_schema"]["properties"]["delimiter"]["default"] == ","


def test_schema_is_openapi_listing_every_endpoint(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/jobs/", "/api/v1/jobs/{job_id}/", "/api/v1/jobs/{job_id}/result-url",
            "/api/v1/jobs/{job_id}/cancel", "/api/v1/jobs/{job_id}/retry", "/api/v1/dead-letters/",
            "/api/v1/dead-letters/{id}/replay", "/api/v1/job-types/"} <= set(paths)
    create = paths["/api/v1/jobs/"]["post"]
    assert {"201", "400", "409", "415", "429"} <= set(create["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])


def test_docs_page_serves_swagger_ui_from_this_server_not_a_cdn(client):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html and "cdn." not in html and "/static/drf_spectacular_sidecar/" in html
    asset = html.split('src="', 1)[1].split('"', 1)[0] if 'src="' in html else None
    assert asset and client.get(asset).status_code == 200


def test_an_unknown_api_path_is_a_json_404(api):
    response = api.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_missing_trailing_slash_is_a_json_404_that_says_which_path_to_use(api):
    response = api.post("/api/v1/jobs", {}, format="json")
    assert response.status_code == 404
    assert "/api/v1/jobs/" in error_of(response)["message"]


def test_a_wrong_method_is_405_with_allow(api):
    response = api.put("/api/v1/jobs/", {}, format="json")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed" and "POST" in response["Allow"]


def test_an_unhandled_exception_in_a_view_becomes_a_json_500(caplog):
    response = exception_handler(RuntimeError("boom"), {"view": None})
    assert response.status_code == 500
    assert response.data["error"]["code"] == "server_error"
    assert "api.unhandled_error" in caplog.text


def test_django_error_handlers_answer_json_under_api_and_html_elsewhere():
    factory = RequestFactory()
    api_500 = handler500(factory.get("/api/v1/jobs/"))
    assert api_500.status_code == 500 and b'"server_error"' in api_500.content
    assert handler404(factory.get("/api/v2/"), None)["Content-Type"] == "application/json"
    assert "text/html" in handler404(factory.get("/nowhere"), None)["Content-Type"]


@pytest.mark.parametrize("exception, status, code", [
    (DisallowedHost("bad host"), 400, "disallowed_host"),
    (TooManyFieldsSent("too many"), 400, "too_many_fields"),
    (RequestDataTooBig("too big"), 413, "too_large"),
])
def test_django_400s_answer_json_with_a_code_under_api_and_a_page_elsewhere(exception, status, code):
    factory = RequestFactory()
    response = handler400(factory.get("/api/v1/jobs/"), exception)
    assert response.status_code == status and response["Content-Type"] == "application/json"
    assert f'"code":"{code}"'.encode() in response.content
    page = handler400(factory.get("/upload/"), exception)
    assert page.status_code == 400 and "text/html" in page["Content-Type"]


def test_django_403s_answer_json_under_api_and_a_page_elsewhere():
    factory = RequestFactory()
    response = handler403(factory.get("/api/v1/jobs/"), PermissionDenied())
    assert response.status_code == 403 and b'"permission_denied"' in response.content
    assert "text/html" in handler403(factory.get("/upload/"), PermissionDenied())["Content-Type"]


def test_a_token_clients_post_to_an_unknown_api_path_is_a_json_404_not_a_csrf_error(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    response = client.post("/api/v1/no-such-thing/", {"a": 1}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
