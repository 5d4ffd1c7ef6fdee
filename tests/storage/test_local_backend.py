"""STORAGE_BACKEND=local: the same storage API on the local disk, for a deployment with no S3."""

import pytest

import storage


@pytest.fixture
def local_storage(settings, tmp_path):
    settings.STORAGE_BACKEND = "local"
    settings.LOCAL_STORAGE_ROOT = tmp_path
    storage.ensure_buckets()
    return tmp_path


def test_objects_round_trip_through_the_local_backend(local_storage):
    key = storage.upload_key(7, "data.csv")
    with storage.open_write(storage.input_bucket(), key, content_type="text/csv") as writer:
        writer.write(b"a,b\n")
        writer.write(b"1,2\n")

    assert storage.head(storage.input_bucket(), key).size == 8
    with storage.open_read(storage.input_bucket(), key) as stream:
        assert stream.read() == b"a,b\n1,2\n"
    assert storage.list_keys(storage.input_bucket(), storage.owner_upload_prefix(7)) == [key]
    assert storage.delete_prefix(storage.input_bucket(), storage.owner_upload_prefix(7)) == 1
    with pytest.raises(storage.ObjectNotFound):
        storage.head(storage.input_bucket(), key)


def test_a_failed_local_write_leaves_no_file(local_storage):
    key = storage.upload_key(7, "broken.bin")
    with pytest.raises(RuntimeError), storage.open_write(storage.input_bucket(), key) as writer:
        writer.write(b"partial")
        raise RuntimeError("client went away")

    with pytest.raises(storage.ObjectNotFound):
        storage.head(storage.input_bucket(), key)
    assert [p for p in local_storage.rglob("*") if p.is_file()] == []


def test_a_key_cannot_escape_its_bucket_directory(local_storage):
    with pytest.raises(storage.StorageError, match="escapes its bucket"):
        storage.put_bytes(storage.input_bucket(), "../../etc/evil", b"x")


@pytest.mark.django_db
def test_local_download_links_are_signed_and_carry_the_file_name(local_storage, client):
    key = storage.upload_key(7, "report.json")
    storage.put_bytes(storage.output_bucket(), key, b'{"ok": true}', "application/json")

    url = storage.presigned_get_url(storage.output_bucket(), key, expires=60, filename="report.json")
    response = client.get(url)

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b'{"ok": true}'
    assert 'filename="report.json"' in response["Content-Disposition"]
    assert client.get(url[:-3] + "abc").status_code == 404
