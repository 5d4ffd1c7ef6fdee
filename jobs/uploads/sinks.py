"""Where a streamed request body goes: straight into one upload (PUT), or through an
incremental multipart/form-data parser that sends the `file` field into one (POST).

Both are blocking (storage writes) and run in a worker thread, one call per batch of body bytes.
They expose feed(batch), finish() -> UploadResult and abort(); a batch is one buffer of the
body's next bytes.

The form parser is `multipart` (PyPI, by the author of Bottle): a push parser with no I/O
of its own, so it takes whatever chunks the server hands over, and with limits on header
size, header count and segment count that bound what a hostile body can make us hold.
"""

from __future__ import annotations

from multipart import MultipartSegment, ParserError, PushMultipartParser

from jobs.errors import JobError

from .services import StreamingUpload, UploadResult, upload_begin

FILE_FIELD = "file"
MAX_SEGMENTS = 16  # the file plus a few small fields (e.g. a CSRF token); more is not a browser form
MAX_FIELD_BYTES = 64 * 1024  # all non-file fields together; their values are not used


class RawBodySink:
    def __init__(self, *, owner, filename: str, content_type: str):
        self.upload = upload_begin(owner=owner, filename=filename, content_type=content_type)

    def feed(self, batch: bytes | bytearray) -> None:
        self.upload.write(batch)

    def finish(self) -> UploadResult:
        return self.upload.commit()

    def abort(self) -> None:
        self.upload.abort()


class FormDataSink:
    """Exactly one file, in the field `file`; other (small) fields are read and ignored."""

    def __init__(self, *, owner, boundary: str, content_length: int | None):
        self.owner = owner
        self.parser = PushMultipartParser(boundary, content_length=-1 if content_length is None else content_length,
                                          max_segment_count=MAX_SEGMENTS)
        self.upload: StreamingUpload | None = None
        self.in_file = False
        self.file_done = False
        self.field_bytes = 0

    def feed(self, batch: bytes | bytearray) -> None:
        try:
            for event in self.parser.parse(batch):
                self._handle(event)
        except ParserError as exc:
            raise JobError(f"malformed multipart/form-data body: {exc}"[:300], code="malformed_form") from exc

    def _handle(self, event: MultipartSegment | bytes | None) -> None:
        if isinstance(event, MultipartSegment):
            self._begin(event)
        elif event is None:  # end of a segment
            if self.in_file:
                self.in_file, self.file_done = False, True
        elif self.in_file:
            self.upload.write(event)
        else:
            self.field_bytes += len(event)
            if self.field_bytes > MAX_FIELD_BYTES:
                raise JobError(f"form fields other than {FILE_FIELD!r} are limited to {MAX_FIELD_BYTES} bytes",
                               code="malformed_form")

    def _begin(self, segment: MultipartSegment) -> None:
        is_file = segment.filename is not None
        if segment.name != FILE_FIELD:
            if is_file:
                raise JobError(f"unexpected file in the field {segment.name!r}; send one file, in the field "
                               f"{FILE_FIELD!r}"[:300], code="unexpected_file")
            return
        if self.upload is not None:
            raise JobError(f"only one file per request, in the field {FILE_FIELD!r}", code="too_many_files")
        if not is_file or not segment.filename:
            # A file input left empty is sent with filename="" and no bytes.
            raise JobError(f"the field {FILE_FIELD!r} must hold a chosen file", code="file_missing")
        self.upload = upload_begin(owner=self.owner, filename=segment.filename, content_type=segment.content_type)
        self.in_file = True

    def finish(self) -> UploadResult:
        try:
            self.parser.close()  # raises if the body ended before its closing boundary
        except ParserError as exc:
            raise JobError(f"malformed multipart/form-data body: {exc}"[:300], code="malformed_form") from exc
        if self.upload is None or not self.file_done:
            raise JobError(f"no file: send it as a multipart/form-data field named {FILE_FIELD!r}",
                           code="file_missing")
        return self.upload.commit()

    def abort(self) -> None:
        if self.upload is not None:
            self.upload.abort()
