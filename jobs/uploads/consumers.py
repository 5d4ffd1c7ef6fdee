"""The streaming upload endpoints, as a plain ASGI app served by Uvicorn ahead of Django.

    PUT  /api/v1/uploads/<filename>   the raw file as the body
    POST /api/v1/uploads/             multipart/form-data with the file in the field `file`

Django's own ASGI handler spools a whole body to a temp file before any view runs; here
each `http.request` chunk goes on as it arrives. Only one batch is collected while the
previous one is being written, and receive() is not called while both are busy, so Uvicorn
stops reading the socket and the client is slowed down instead of the body piling up in
memory: at most BATCH_BYTES here plus what the writer holds, which grows with the bytes
received up to (parts in flight + 1) x part size (storage/objects.py).

Admission comes before any of that, cheapest first: the declared size, the credentials, the
number of uploads under way (UploadSlots), the upload rate. A client that sends nothing for
UPLOAD_IDLE_TIMEOUT_SECONDS is answered 408 and its upload aborted. Every response carries
the security headers of Django's pages.

Every upload that does not finish is aborted, including one the server cancels at shutdown;
wait_for_uploads() is what the lifespan shutdown (lifespan.py) awaits for those aborts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from urllib.parse import unquote_to_bytes

from channels.db import database_sync_to_async
from django.conf import settings
from multipart import parse_options_header

from jobplatform.admission import with_security_headers
from jobs.api.errors import error_body
from jobs.api.rendering import render_json
from jobs.errors import JobError

from . import auth
from .sinks import FormDataSink, RawBodySink

logger = logging.getLogger(__name__)

PATH_PREFIX = b"/api/v1/uploads/"
BATCH_BYTES = 1024 * 1024  # body bytes handed to the writer thread at a time
FORM_OVERHEAD_BYTES = 1024 * 1024  # boundaries and small fields a form may add around the file
SLOT_RETRY_AFTER_SECONDS = 5  # an upload under way takes a while; a sooner retry would be refused again
# Blocking storage writes run here, never on the event loop nor on Django's one sync thread
# (that would stall every other request for as long as an upload takes).
_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="upload")
_in_flight: set[asyncio.Future] = set()  # one per body being streamed, done once stored or aborted


class ClientGone(Exception):
    """The client disconnected before the body was complete."""


class UploadSlots:
    """The streamed uploads under way in this web process, per user and in all.

    The counts are this process's own: with several web processes, each admits up to
    UPLOAD_MAX_CONCURRENT. Taken and given back on the event loop, so no lock is needed.
    """

    def __init__(self):
        self.total = 0
        self.per_user: Counter[int] = Counter()

    def take(self, user_id: int) -> None:
        """One slot for the user, or JobError 429 too_many_uploads."""
        if self.per_user[user_id] >= settings.UPLOAD_MAX_CONCURRENT_PER_USER:
            raise self.refused(f"at most {settings.UPLOAD_MAX_CONCURRENT_PER_USER} uploads at a time per user; "
                               "wait for one to finish", "user", settings.UPLOAD_MAX_CONCURRENT_PER_USER)
        if self.total >= settings.UPLOAD_MAX_CONCURRENT:
            raise self.refused("the server is receiving as many uploads as it takes at once; try again shortly",
                               "server", settings.UPLOAD_MAX_CONCURRENT)
        self.total += 1
        self.per_user[user_id] += 1

    def give_back(self, user_id: int) -> None:
        self.total -= 1
        self.per_user[user_id] -= 1
        if self.per_user[user_id] <= 0:
            del self.per_user[user_id]

    @staticmethod
    def refused(message: str, scope: str, limit: int) -> JobError:
        return JobError(message, code="too_many_uploads", status=429,
                        details={"scope": scope, "limit": limit, "retry_after": SLOT_RETRY_AFTER_SECONDS})


slots = UploadSlots()


async def respond(send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    payload = render_json(body)
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                   (b"cache-control", b"no-store")]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


async def respond_error(send, exc: JobError, *, body_pending: bool) -> None:
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Token"
    if exc.status == 429:
        headers["Retry-After"] = str(exc.details.get("retry_after", 1))
    if body_pending:
        # The rest of the body is not wanted; closing beats Uvicorn reading and discarding it.
        headers["Connection"] = "close"
    await respond(send, exc.status, error_body(exc.code, exc.message, exc.details), headers)


def filename_in_path(scope: dict) -> str | None:
    """The percent-decoded last part of the raw path, or None for the form endpoint.

    Read from raw_path: the decoded path has already turned %2F into a separator.
    """
    raw = scope.get("raw_path") or scope["path"].encode()
    raw = raw.split(b"?", 1)[0]
    start = raw.find(PATH_PREFIX)
    rest = raw[start + len(PATH_PREFIX):] if start >= 0 else b""
    if not rest:
        return None
    return unquote_to_bytes(rest).decode("utf-8", "replace")


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def content_length(scope: dict) -> int | None:
    value = header(scope, b"content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise JobError("invalid Content-Length header", code="bad_request")
    return int(value)


class UploadApp:
    async def __call__(self, scope: dict, receive, send) -> None:
        started = False
        send = with_security_headers(scope, send)

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.handle(scope, receive, tracking_send)
        except ClientGone:
            logger.info("upload.client_disconnected path=%s", scope.get("path"))
        except Exception:
            logger.exception("upload.failed path=%s", scope.get("path"))
            if not started:  # still answer in the API's shape, never the server's plain-text 500
                await respond_error(send, JobError("internal server error; the error was logged",
                                                   code="server_error", status=500), body_pending=True)

    async def handle(self, scope: dict, receive, send) -> None:
        filename = filename_in_path(scope)
        allowed = "POST" if filename is None else "PUT"
        if scope["method"] != allowed:
            await respond_error(send, JobError(f"method {scope['method']} not allowed here; use {allowed}"[:200],
                                               code="method_not_allowed", status=405), body_pending=True)
            return
        try:
            length = content_length(scope)
            check_declared_size(filename, length)
            drf_request = await database_sync_to_async(auth.authenticate)(scope)
        except JobError as exc:
            await respond_error(send, exc, body_pending=True)
            return
        user_id = drf_request.user.pk
        try:
            slots.take(user_id)
        except JobError as exc:
            await respond_error(send, exc, body_pending=True)
            return
        try:
            try:
                sink = self.make_sink(scope, filename, length, drf_request.user)
                await database_sync_to_async(auth.throttle)(drf_request)
                result = await self.stream(receive, sink)
            except JobError as exc:
                await respond_error(send, exc, body_pending=True)
                return
            await respond(send, 201, result.as_dict())
        finally:
            slots.give_back(user_id)

    def make_sink(self, scope: dict, filename: str | None, length: int | None, user):
        """Checked before a byte of the body is read: the form's framing. Allocates no buffer:
        the upload's writer holds only the bytes it is given."""
        content_type = header(scope, b"content-type") or ""
        if filename is not None:
            return RawBodySink(owner=user, filename=filename, content_type=content_type)
        kind, options = parse_options_header(content_type)
        boundary = options.get("boundary", "")
        if kind != "multipart/form-data" or not boundary or len(boundary) > 200:
            raise JobError("send the file as multipart/form-data (field 'file'), or PUT the raw bytes to "
                           "/api/v1/uploads/<filename>", code="unsupported_media_type", status=415)
        return FormDataSink(owner=user, boundary=boundary, content_length=length)

    async def stream(self, receive, sink):
        """Feeds the body to the sink batch by batch; aborts the upload if anything goes wrong,
        including a client that sends nothing for UPLOAD_IDLE_TIMEOUT_SECONDS."""
        ended = asyncio.get_running_loop().create_future()  # stored or aborted: shutdown waits for it
        _in_flight.add(ended)
        ended.add_done_callback(_in_flight.discard)
        # The sink's last call in the pool (a feed, or the finish): the writer is not
        # thread-safe, so an abort waits for it.
        pending: Future | None = None
        # One buffer per batch, not a list of the server's chunks: a body trickled a byte at
        # a time must not cost a Python object per byte.
        batch = bytearray()
        idle = settings.UPLOAD_IDLE_TIMEOUT_SECONDS
        try:
            more = True
            while more:
                try:
                    async with asyncio.timeout(idle):
                        message = await receive()
                except TimeoutError:
                    raise JobError(f"no bytes of the upload arrived for {idle:g} seconds; it was aborted",
                                   code="upload_idle", status=408, details={"idle_timeout_seconds": idle}) from None
                if message["type"] == "http.disconnect":
                    raise ClientGone
                batch += message.get("body", b"")
                more = message.get("more_body", False)
                if len(batch) >= BATCH_BYTES or (batch and not more):
                    if pending is not None:
                        await asyncio.wrap_future(pending)  # the previous batch; its errors surface here
                    pending = _executor.submit(sink.feed, batch)
                    batch = bytearray()
            if pending is not None:
                await asyncio.wrap_future(pending)
            pending = _executor.submit(sink.finish)
            result = await asyncio.wrap_future(pending)
            ended.set_result(None)
            return result
        except BaseException:
            # Submitted with no await before it, so a request cancelled by the server's
            # graceful-shutdown timeout still aborts; the lifespan shutdown waits for it.
            aborting = asyncio.wrap_future(_executor.submit(abort_after, sink, pending))
            aborting.add_done_callback(lambda _: ended.done() or ended.set_result(None))
            await asyncio.shield(aborting)
            raise


def check_declared_size(filename: str | None, length: int | None) -> None:
    """A declared size over the limit is refused before the credentials are even looked at."""
    limit = settings.UPLOAD_MAX_BYTES + (FORM_OVERHEAD_BYTES if filename is None else 0)
    if length is not None and length > limit:
        raise JobError(f"the file is larger than the upload limit of {settings.UPLOAD_MAX_BYTES} bytes",
                       code="too_large", status=413,
                       details={"max_bytes": settings.UPLOAD_MAX_BYTES, "content_length": length})


def abort_after(sink, pending: Future | None) -> None:
    """Aborts the sink's upload once its call in progress has ended. Runs in the pool."""
    if pending is not None:
        wait([pending])
    sink.abort()


async def wait_for_uploads(timeout: float) -> int:
    """Waits up to `timeout` seconds for the uploads under way to be stored or aborted;
    returns how many are still under way."""
    if _in_flight:
        logger.info("upload.shutdown_waiting uploads=%s", len(_in_flight))
        await asyncio.wait(set(_in_flight), timeout=timeout)
    if _in_flight:
        logger.warning("upload.shutdown_timeout uploads=%s left open for the clean-up", len(_in_flight))
    return len(_in_flight)
