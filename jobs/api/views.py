"""API views, one per endpoint: parse input, call a selector or service, shape the output.

Ownership is the selectors' job (another user's job is a 404); state rules are the
services' job (a refused move is a 409). Nothing here changes a row directly.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import selectors
from jobs.errors import JobError
from jobs.models import DeadLetter
from jobs.services import actions, create
from processors import all_processors

from . import serializers as s
from .authentication import TokenAuthentication
from .errors import error_summary
from .pagination import Cursor, DeadLetterCursor, cursor_page
from .parsers import JSONParser
from .throttles import JobActionThrottle, JobCreateThrottle

PG_BIGINT_MAX = 2**63 - 1
PAGE_PARAMS = [OpenApiParameter("cursor", str, required=False,
                               description="opaque: taken from a page's next or previous URL"),
               OpenApiParameter("page_size", int, required=False, description="at most 100")]


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    described = {400: "invalid input", 401: "not authenticated", 403: "not allowed", 404: "not found",
                 409: "not possible in the job's current state", 413: "request body too large",
                 415: "the body is not JSON", 429: "too many requests (see Retry-After)",
                 503: "object storage unavailable"}
    return {code: OpenApiResponse(s.ErrorBodySerializer, description=described[code]) for code in codes}


def _actor(request: Request) -> str:
    return f"user:{request.user.pk}"


def validated(serializer_class, data, *, code: str = "invalid") -> dict:
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise JobError(f"invalid request: {error_summary(serializer.errors)}"[:1000], code=code,
                       details=serializer.errors)
    return serializer.validated_data


# Token first: an anonymous request then gets 401 with WWW-Authenticate, not a bare 403.
class ApiView(APIView):
    authentication_classes = (TokenAuthentication, SessionAuthentication)
    parser_classes = (JSONParser,)
    permission_classes = (IsAuthenticated,)


class JobListCreateApi(ApiView):
    def get_throttles(self):
        return [JobCreateThrottle()] if self.request.method == "POST" else []

    @extend_schema(operation_id="jobs_list", summary="Your jobs, newest first",
                   parameters=[s.JobFilterSerializer, *PAGE_PARAMS],
                   responses={200: cursor_page("PaginatedJobList", s.JobSerializer), **error_responses(400, 401)})
    def get(self, request: Request) -> Response:
        filters = validated(s.JobFilterSerializer, request.query_params, code="invalid_filter")
        # List items leave the result out (one result can be megabytes), so the rows are read without it.
        jobs = selectors.job_list(user=request.user, **filters).defer("result")
        paginator = Cursor()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(s.JobSerializer(page, many=True).data)

    @extend_schema(
        operation_id="jobs_create", summary="Create a job for an uploaded object",
        request=s.JobCreateInputSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description="repeat a create safely: the same key and body return the same "
                                                 "job (200); the same key with another body is a 409"),
                    OpenApiParameter("Location", str, OpenApiParameter.HEADER, response=[201],
                                     description="the created job's URL")],
        responses={201: s.JobDetailSerializer, 200: OpenApiResponse(s.JobDetailSerializer,
                                                                    description="idempotent repeat"),
                   **error_responses(400, 401, 404, 409, 413, 415, 429, 503)})
    def post(self, request: Request) -> Response:
        data = validated(s.JobCreateInputSerializer, request.data)
        meta = data.get("input_metadata")
        result = create.job_create(
            owner=request.user, job_type=data["job_type"],
            input_key=meta["key"] if meta else data["input_object_key"],
            input_bucket=meta["bucket"] if meta else None,
            params=data.get("params") or {}, idempotency_key=request.headers.get("Idempotency-Key"),
            callback_url=data.get("callback_url") or "")
        response = Response(s.JobDetailSerializer(result.job, context={"events": result.events}).data,
                            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
        # RFC 9110: a 201 names the resource it created.
        if result.created:
            response["Location"] = request.build_absolute_uri(reverse("api-job-detail", args=[result.job.id]))
        return response


class JobDetailApi(ApiView):
    @extend_schema(operation_id="jobs_retrieve", summary="One of your jobs, with its events",
                   responses={200: s.JobDetailSerializer, **error_responses(401, 404)})
    def get(self, request: Request, job_id) -> Response:
        job = selectors.job_get(user=request.user, job_id=job_id)
        return Response(s.JobDetailSerializer(job).data)


class JobResultUrlApi(ApiView):
    @extend_schema(operation_id="jobs_result_url", summary="A presigned download URL for a result (or the input)",
                   parameters=[s.ResultUrlQuerySerializer],
                   responses={200: s.ResultUrlSerializer, **error_responses(400, 401, 404, 409, 503)})
    def get(self, request: Request, job_id) -> Response:
        query = validated(s.ResultUrlQuerySerializer, request.query_params)
        job = selectors.job_get(user=request.user, job_id=job_id)
        url, expires_at = actions.job_download_url(job=job, which=query["which"],
                                                    expiry_sec=query.get("expiry_sec"), output=query.get("output"))
        return Response(s.ResultUrlSerializer({"url": url, "expires_at": expires_at}).data)

    def handle_exception(self, exc):
        # The expiry is the parameter callers get wrong most; give it its own code.
        if isinstance(exc, JobError) and exc.code == "invalid" and "expiry_sec" in exc.details:
            exc.code = "invalid_expiry"
        return super().handle_exception(exc)


class JobCancelApi(ApiView):
    throttle_classes = (JobActionThrottle,)

    @extend_schema(operation_id="jobs_cancel", request=None,
                   summary="Cancel a job: at once if not running, at the next chunk if running",
                   responses={200: s.JobDetailSerializer, **error_responses(401, 404, 409, 429)})
    def post(self, request: Request, job_id) -> Response:
        job = selectors.job_get(user=request.user, job_id=job_id, allow_staff=True)
        job = actions.job_cancel(job=job, actor=_actor(request))
        return Response(s.JobDetailSerializer(job).data)


class JobRetryApi(ApiView):
    throttle_classes = (JobActionThrottle,)

    @extend_schema(operation_id="jobs_retry", request=None, summary="Queue a FAILED or DEAD job again",
                   responses={200: s.JobDetailSerializer, **error_responses(401, 404, 409, 429)})
    def post(self, request: Request, job_id) -> Response:
        job = selectors.job_get(user=request.user, job_id=job_id, allow_staff=True)
        job = actions.job_retry(job=job, actor=_actor(request))
        return Response(s.JobDetailSerializer(job).data)


class DeadLetterListApi(ApiView):
    permission_classes = (IsAdminUser,)

    @extend_schema(operation_id="dead_letters_list", summary="Dead letters, newest first (staff)",
                   parameters=[s.DeadLetterFilterSerializer, *PAGE_PARAMS],
                   responses={200: cursor_page("PaginatedDeadLetterList", s.DeadLetterSerializer),
                              **error_responses(400, 401, 403)})
    def get(self, request: Request) -> Response:
        filters = validated(s.DeadLetterFilterSerializer, request.query_params, code="invalid_filter")
        letters = selectors.dead_letter_list(pending_only=filters["pending"])
        paginator = DeadLetterCursor()
        page = paginator.paginate_queryset(letters, request, view=self)
        return paginator.get_paginated_response(s.DeadLetterSerializer(page, many=True).data)


class DeadLetterReplayApi(ApiView):
    permission_classes = (IsAdminUser,)
    throttle_classes = (JobActionThrottle,)

    @extend_schema(operation_id="dead_letters_replay", request=None, summary="Queue a dead job again (staff)",
                   responses={200: s.JobDetailSerializer, **error_responses(401, 403, 404, 409, 429)})
    def post(self, request: Request, pk: int) -> Response:
        letter = DeadLetter.objects.filter(pk=pk).first() if pk <= PG_BIGINT_MAX else None
        if letter is None:
            raise JobError("dead letter not found", code="not_found", status=404)
        job = actions.dead_letter_replay(dead_letter=letter, actor=_actor(request))
        return Response(s.JobDetailSerializer(job).data)


class JobTypeListApi(ApiView):
    @extend_schema(operation_id="job_types_list", summary="The job types and their parameter schemas",
                   responses={200: s.JobTypeSerializer(many=True), **error_responses(401)})
    def get(self, request: Request) -> Response:
        return Response(s.JobTypeSerializer(all_processors(), many=True).data)
