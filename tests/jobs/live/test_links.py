"""The result link in live job payloads: the web pages' download path, under the script prefix.
A real worker's link is checked in test_consumers (the COMPLETED message it publishes)."""

from __future__ import annotations

import uuid

import pytest
from django.urls import set_script_prefix

from jobs import notify


@pytest.mark.parametrize("prefix", ["/", "/jobplatform/"])
def test_the_download_path_is_the_jobs_download_page_under_the_script_prefix(prefix):
    job_id = uuid.uuid4()
    set_script_prefix(prefix)
    try:
        assert notify.download_path(job_id) == f"{prefix}jobs/{job_id}/download"
    finally:
        set_script_prefix("/")
