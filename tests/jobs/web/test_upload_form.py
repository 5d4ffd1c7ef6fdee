"""The upload form: built from each processor's schema; works without JavaScript (the file
in the form post) and with it (the page posts the key of an object it already uploaded)."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

import storage
from jobs.models import Job

pytestmark = pytest.mark.django_db

CSV = b"name;age\nann;31\nbob;42\n"


def user_objects(user) -> list[str]:
    return storage.list_keys(storage.input_bucket(), storage.owner_upload_prefix(user.pk))


def form(job_type="CSV_ROW_COUNT", file=None, **params) -> dict:
    data = {"job_type": job_type, **{f"{job_type}-{k}": v for k, v in params.items()}}
    if file is not None:
        data["file"] = file
    return data


def test_the_form_offers_every_job_type_with_its_options_and_defaults(signed_in):
    content = signed_in.get("/upload/").content.decode()
    for job_type in ("CSV_ROW_COUNT", "CSV_PROFILE", "JSON_CANONICALIZE", "SHA256"):
        assert f'<option value="{job_type}"' in content
        assert f'data-params-for="{job_type}"' in content
    assert re.search(r'<input type="checkbox" name="CSV_ROW_COUNT-has_header"[^>]* checked>', content)  # boolean
    assert '<input type="text" name="CSV_ROW_COUNT-delimiter" value=","' in content  # string, its default
    assert '<select name="JSON_CANONICALIZE-mode"' in content  # enum
    assert '<option value="document" selected>document</option>' in content
    assert "files up to 2.0" in content  # the no-JavaScript limit is stated


def test_without_javascript_the_posted_file_is_stored_and_its_job_created(signed_in, user):
    response = signed_in.post("/upload/", form(file=SimpleUploadedFile("people.csv", CSV), delimiter=";",
                                               has_header="on", quotechar='"', encoding="utf-8"))
    job = Job.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    assert job.job_type == "CSV_ROW_COUNT" and job.input_name == "people.csv"
    assert job.params == {"has_header": True, "delimiter": ";", "quotechar": '"', "encoding": "utf-8"}
    assert storage.read_bytes(job.input_bucket, job.input_key, 1000) == CSV


def test_an_unchecked_checkbox_means_false_and_empty_options_mean_the_defaults(signed_in, user):
    signed_in.post("/upload/", form(file=SimpleUploadedFile("p.csv", CSV), delimiter="", encoding=""))
    assert Job.objects.get(owner=user).params == {"has_header": False, "delimiter": ",", "quotechar": '"',
                                                  "encoding": "utf-8"}


def test_a_tab_delimiter_can_be_typed_as_backslash_t(signed_in, user):
    signed_in.post("/upload/", form(file=SimpleUploadedFile("p.tsv", b"a\tb\n"), delimiter="\\t"))
    assert Job.objects.get(owner=user).params["delimiter"] == "\t"


def test_with_javascript_the_form_creates_the_job_from_the_uploaded_object(signed_in, user, upload):
    key = upload(user, CSV, "people.csv")
    response = signed_in.post("/upload/", {**form(delimiter=";"), "object_key": key, "object_name": "people.csv"})
    job = Job.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    assert (job.input_key, job.input_name, job.params["delimiter"]) == (key, "people.csv", ";")


def test_no_file_chosen_is_a_clear_error(signed_in, user):
    response = signed_in.post("/upload/", form())
    assert response.status_code == 400
    assert b"Choose a file to process." in response.content
    assert not Job.objects.exists()


def test_an_unknown_job_type_is_a_clear_error_and_stores_nothing(signed_in, user):
    response = signed_in.post("/upload/", form("NO_SUCH_TYPE", file=SimpleUploadedFile("a.csv", CSV)))
    assert response.status_code == 400
    assert b"Select a valid choice. NO_SUCH_TYPE is not one of the available choices." in response.content
    assert not Job.objects.exists() and user_objects(user) == []


@pytest.mark.parametrize(("params", "message"), [
    ({"delimiter": "ab"}, "must be exactly one character, got &#x27;ab&#x27;"),
    ({"encoding": "klingon-8"}, "unknown encoding &#x27;klingon-8&#x27;"),
    ({"encoding": "rot13"}, "&#x27;rot13&#x27; is not a text encoding"),
    ({"delimiter": '"'}, "must differ from the delimiter"),
])
def test_bad_params_are_shown_next_to_the_field_and_store_nothing(signed_in, user, params, message):
    response = signed_in.post("/upload/", form(file=SimpleUploadedFile("a.csv", CSV), **params))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'class="param has-error"' in response.content.decode()
    assert not Job.objects.exists() and user_objects(user) == []


def test_a_huge_param_value_is_refused_by_the_form(signed_in, user):
    response = signed_in.post("/upload/", form(file=SimpleUploadedFile("a.csv", CSV), encoding="x" * 100_000))
    assert response.status_code == 400
    assert b"Ensure this value has at most 64 characters" in response.content
    assert not Job.objects.exists()


def test_a_request_body_over_djangos_limit_is_a_400_not_a_500(signed_in, user):
    response = signed_in.post("/upload/", {"job_type": "CSV_ROW_COUNT", "CSV_ROW_COUNT-encoding": "x" * 3_000_000})
    assert response.status_code == 400
    assert not Job.objects.exists()


def test_a_file_over_the_no_javascript_limit_is_refused_with_the_limit(signed_in, user, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = signed_in.post("/upload/", form(file=SimpleUploadedFile("big.csv", b"a\n" * 1000)))
    assert response.status_code == 400
    assert b"This file is 2,000 bytes; without JavaScript the limit is 1,000 bytes" in response.content
    assert not Job.objects.exists() and user_objects(user) == []


def test_an_empty_file_makes_a_job_that_the_processor_judges(signed_in, user):
    response = signed_in.post("/upload/", form("SHA256", file=SimpleUploadedFile("empty.bin", b"")))
    assert response.status_code == 302
    assert Job.objects.get(owner=user).input_size == 0


def test_another_users_object_key_is_refused_and_the_form_asks_for_the_file_again(signed_in, other_user, upload):
    key = upload(other_user, CSV, "theirs.csv")
    response = signed_in.post("/upload/", {**form(), "object_key": key, "object_name": "theirs.csv"})
    assert response.status_code == 404
    assert b"input object not found; choose the file again." in response.content
    assert not Job.objects.exists()


@pytest.mark.parametrize("key", ["../../etc/passwd", "x" * 5000, "uploads/1/\x00/a"])
def test_a_hostile_object_key_is_a_clear_error(signed_in, key):
    response = signed_in.post("/upload/", {**form(), "object_key": key})
    assert response.status_code in (400, 404)
    assert not Job.objects.exists()


def test_a_form_that_came_back_with_errors_keeps_the_uploaded_object(signed_in, user, upload):
    key = upload(user, CSV, "people.csv")
    response = signed_in.post("/upload/", {**form(delimiter="ab"), "object_key": key, "object_name": "people.csv"})
    content = response.content.decode()
    assert response.status_code == 400
    assert f'value="{key}"' in content and "Uploaded: <strong>people.csv</strong>" in content


def test_the_upload_form_needs_a_get_or_post(signed_in):
    assert signed_in.put("/upload/").status_code == 405
