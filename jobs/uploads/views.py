"""Direct uploads: the client PUTs parts straight to object storage through presigned URLs.

Thin DRF views over jobs.uploads.services; ownership and size checks live there.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api.throttles import UploadPartThrottle
from jobs.api.views import ApiView, error_responses, validated

from . import services
from .throttles import UploadThrottle


class UploadResultSerializer(serializers.Serializer):
    bucket = serializers.CharField()
    object_key = serializers.CharField()
    size = serializers.IntegerField()
    etag = serializers.CharField()
    sha256 = serializers.CharField(allow_null=True, help_text="null for direct uploads: the bytes never "
                                                                   "pass through this server")
    filename = serializers.CharField()


class CreateInputSerializer(serializers.Serializer):
    filename = serializers.CharField(max_length=1000, trim_whitespace=False)
    size = serializers.IntegerField(min_value=1, max_value=2**62)
    content_type = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class CreateOutputSerializer(serializers.Serializer):
    upload_id = serializers.UUIDField(source="id")
    bucket = serializers.CharField()
    object_key = serializers.CharField(source="key")
    filename = serializers.CharField()
    size = serializers.IntegerField()
    part_size = serializers.IntegerField()
    part_count = serializers.IntegerField()


class SignInputSerializer(serializers.Serializer):
    part_numbers = serializers.ListField(child=serializers.IntegerField(), min_length=1,
                                         max_length=services.SIGN_BATCH_MAX)


class PartUrlSerializer(serializers.Serializer):
    part_number = serializers.IntegerField()
    url = serializers.URLField()


class SignOutputSerializer(serializers.Serializer):
    parts = PartUrlSerializer(many=True)


class PartSerializer(serializers.Serializer):
    part_number = serializers.IntegerField()
    etag = serializers.CharField(max_length=256)


class CompleteInputSerializer(serializers.Serializer):
    parts = PartSerializer(many=True, allow_empty=False, max_length=services.MAX_PARTS)


class MultipartCreateApi(ApiView):
    throttle_classes = (UploadThrottle,)

    @extend_schema(operation_id="uploads_multipart_create", summary="Start a direct upload to object storage",
                   request=CreateInputSerializer,
                   responses={201: CreateOutputSerializer, **error_responses(400, 401, 413, 429, 503)})
    def post(self, request: Request) -> Response:
        data = validated(CreateInputSerializer, request.data)
        session = services.multipart_create(owner=request.user, **data)
        return Response(CreateOutputSerializer(session).data, status=status.HTTP_201_CREATED)


# Signing, completing and aborting count as one scope of their own: an upload makes many such
# calls (a sign per batch of parts), so they do not spend the per-file upload allowance.
class MultipartPartsApi(ApiView):
    throttle_classes = (UploadPartThrottle,)

    @extend_schema(operation_id="uploads_multipart_sign_parts", summary="Presigned URLs to PUT parts to",
                   request=SignInputSerializer,
                   responses={200: SignOutputSerializer, **error_responses(400, 401, 404, 409, 429)})
    def post(self, request: Request, upload_id) -> Response:
        data = validated(SignInputSerializer, request.data, code="invalid_part_number")
        parts = services.multipart_sign_parts(owner=request.user, upload_id=upload_id, **data)
        return Response({"parts": parts})


class MultipartCompleteApi(ApiView):
    throttle_classes = (UploadPartThrottle,)

    @extend_schema(operation_id="uploads_multipart_complete",
                   summary="Join the parts; the object's size must be the declared one",
                   request=CompleteInputSerializer,
                   responses={201: UploadResultSerializer, **error_responses(400, 401, 404, 409, 429, 503)})
    def post(self, request: Request, upload_id) -> Response:
        data = validated(CompleteInputSerializer, request.data, code="invalid_parts")
        result = services.multipart_complete(owner=request.user, upload_id=upload_id, parts=data["parts"])
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)


class MultipartAbortApi(ApiView):
    throttle_classes = (UploadPartThrottle,)

    @extend_schema(operation_id="uploads_multipart_abort", summary="Abandon a direct upload",
                   responses={204: OpenApiResponse(description="aborted"),
                              **error_responses(401, 404, 409, 429, 503)})
    def delete(self, request: Request, upload_id) -> Response:
        services.multipart_abort(owner=request.user, upload_id=upload_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
