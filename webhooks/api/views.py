"""Webhooks API views: a user's endpoints, signing secret and deliveries; nothing of anyone else's."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api.errors import error_response
from jobs.api.pagination import Cursor, cursor_page
from jobs.api.throttles import ScopedThrottle
from jobs.api.views import ApiView, error_responses, validated
from webhooks import selectors, services
from webhooks.errors import WebhookError

from . import serializers as s


class WebhookThrottle(ScopedThrottle):
    """Endpoint writes, secret rotations and replays."""

    scope = "webhook"


class WebhookApi(ApiView):
    def get_throttles(self):
        return [WebhookThrottle()] if self.request.method not in ("GET", "HEAD", "OPTIONS") else []

    def handle_exception(self, exc):
        if isinstance(exc, WebhookError):
            return error_response(exc.code, exc.message, exc.status, exc.details)
        return super().handle_exception(exc)


def _actor(request: Request) -> str:
    return f"user:{request.user.pk}"


class EndpointListCreateApi(WebhookApi):
    @extend_schema(operation_id="webhook_endpoints_list", summary="Your webhook endpoints, newest first",
                   responses={200: cursor_page("PaginatedWebhookEndpointList", s.EndpointSerializer),
                              **error_responses(400, 401)})
    def get(self, request: Request) -> Response:
        paginator = Cursor()
        page = paginator.paginate_queryset(selectors.endpoint_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(s.EndpointSerializer(page, many=True).data)

    @extend_schema(operation_id="webhook_endpoints_create", summary="Save a URL to receive your jobs' events",
                   request=s.EndpointInputSerializer,
                   examples=[OpenApiExample("every state", request_only=True, value={
                       "url": "https://hooks.example.com/jobplatform", "events": "all",
                       "description": "the build server"})],
                   responses={201: s.EndpointSerializer, **error_responses(400, 401, 409, 413, 415, 429)})
    def post(self, request: Request) -> Response:
        data = validated(s.EndpointInputSerializer, request.data)
        endpoint = services.endpoint_create(owner=request.user, **data)
        return Response(s.EndpointSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailApi(WebhookApi):
    @extend_schema(operation_id="webhook_endpoints_retrieve", summary="One of your webhook endpoints",
                   responses={200: s.EndpointSerializer, **error_responses(401, 404)})
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.EndpointSerializer(selectors.endpoint_get(user=request.user, endpoint_id=pk)).data)

    @extend_schema(operation_id="webhook_endpoints_update", summary="Change a webhook endpoint",
                   request=s.EndpointPatchSerializer,
                   responses={200: s.EndpointSerializer, **error_responses(400, 401, 404, 413, 415, 429)})
    def patch(self, request: Request, pk: int) -> Response:
        endpoint = selectors.endpoint_get(user=request.user, endpoint_id=pk)
        data = validated(s.EndpointPatchSerializer, request.data)
        endpoint = services.endpoint_update(endpoint=endpoint, **data)
        return Response(s.EndpointSerializer(endpoint).data)

    @extend_schema(operation_id="webhook_endpoints_destroy", summary="Delete a webhook endpoint",
                   responses={204: OpenApiResponse(description="deleted"), **error_responses(401, 404, 429)})
    def delete(self, request: Request, pk: int) -> Response:
        services.endpoint_delete(endpoint=selectors.endpoint_get(user=request.user, endpoint_id=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SecretApi(WebhookApi):
    @extend_schema(operation_id="webhook_secret_retrieve", summary="Your signing secret (made on first use)",
                   responses={200: s.SecretSerializer, **error_responses(401)})
    def get(self, request: Request) -> Response:
        return Response(s.SecretSerializer(services.secret_get(user=request.user)).data)


class SecretRotateApi(WebhookApi):
    @extend_schema(operation_id="webhook_secret_rotate",
                   summary="A new signing secret; the previous one keeps signing for a grace period",
                   request=s.RotateInputSerializer,
                   examples=[OpenApiExample("an hour's grace", request_only=True, value={"grace_seconds": 3600})],
                   responses={200: s.SecretSerializer, **error_responses(400, 401, 413, 415, 429)})
    def post(self, request: Request) -> Response:
        data = validated(s.RotateInputSerializer, request.data or {})
        row = services.secret_rotate(user=request.user, grace_seconds=data.get("grace_seconds"))
        return Response(s.SecretSerializer(row).data)


class DeliveryListApi(WebhookApi):
    @extend_schema(operation_id="webhook_deliveries_list", summary="Your deliveries with their attempts, newest first",
                   parameters=[s.DeliveryFilterSerializer],
                   responses={200: cursor_page("PaginatedWebhookDeliveryList", s.DeliverySerializer),
                              **error_responses(400, 401)})
    def get(self, request: Request) -> Response:
        filters = validated(s.DeliveryFilterSerializer, request.query_params, code="invalid_filter")
        paginator = Cursor()
        page = paginator.paginate_queryset(selectors.delivery_list(user=request.user, **filters), request, view=self)
        return paginator.get_paginated_response(s.DeliverySerializer(page, many=True).data)


class DeliveryDetailApi(WebhookApi):
    @extend_schema(operation_id="webhook_deliveries_retrieve", summary="One of your deliveries, with its attempts",
                   responses={200: s.DeliverySerializer, **error_responses(401, 404)})
    def get(self, request: Request, delivery_id) -> Response:
        return Response(s.DeliverySerializer(selectors.delivery_get(user=request.user, delivery_id=delivery_id)).data)


class DeliveryReplayApi(WebhookApi):
    @extend_schema(operation_id="webhook_deliveries_replay", request=None,
                   summary="Send a delivered or failed delivery again (same body and webhook-id)",
                   responses={202: s.DeliverySerializer, **error_responses(401, 404, 409, 429)})
    def post(self, request: Request, delivery_id) -> Response:
        delivery = selectors.delivery_get(user=request.user, delivery_id=delivery_id)
        delivery = services.delivery_replay(delivery=delivery, actor=_actor(request))
        delivery = selectors.delivery_get(user=request.user, delivery_id=delivery.pk)
        return Response(s.DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
