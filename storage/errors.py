"""Storage errors. Callers decide retry or fail by type, never by parsing messages."""


class StorageError(Exception):
    """Something about the object or request is wrong; retrying will not help."""

    code = "storage_error"


class StorageUnavailable(StorageError):
    """The object store did not answer, or answered 5xx/throttled: transient, retry later."""

    code = "storage_unavailable"


class ObjectNotFound(StorageError):
    code = "object_not_found"


class AccessDenied(StorageError):
    code = "storage_access_denied"
