"""Direct uploads: the client PUTs parts straight to object storage through presigned URLs,
on this API's own shape (/multipart/) or on Uppy Companion's (/s3/multipart).

Thin DRF views over jobs.uploads.services; ownership and size checks live there.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api.throttles import UploadPartThrottle
from jobs.api.views import ApiView, error_responses, validated

from . import resumable, services
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


# --- Uppy Companion's S3 multipart route shape, under /api/v1/uploads/s3/multipart ------------

class S3CreateInputSerializer(serializers.Serializer):
    filename = serializers.CharField(max_length=1000, trim_whitespace=False)
    type = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    metadata = serializers.DictField(required=False, default=dict,
                                     help_text="Uppy's file meta; `size` (bytes), when given, is checked on complete")


class S3CreateOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    uploadId = serializers.CharField(source="upload_id")  # Companion's field names
    bucket = serializers.CharField()


class S3KeySerializer(serializers.Serializer):
    key = serializers.CharField(max_length=1024, trim_whitespace=False)


class S3BatchQuerySerializer(S3KeySerializer):
    partNumbers = serializers.CharField(max_length=10_000, help_text="comma-separated, e.g. 1,2,3")


class S3PartSerializer(serializers.Serializer):
    PartNumber = serializers.IntegerField()
    Size = serializers.IntegerField()
    ETag = serializers.CharField()


class S3PartQuerySerializer(S3KeySerializer):
    checksumSHA256 = serializers.CharField(max_length=64, required=False,
                                           help_text="base64 SHA-256 of the part: the store then verifies the PUT")


class S3SignedPartSerializer(serializers.Serializer):
    url = serializers.URLField()
    expires = serializers.IntegerField(help_text="seconds the URL stays valid")
    headers = serializers.DictField(child=serializers.CharField(), required=False,
                                    help_text="headers the PUT must send (x-amz-checksum-sha256)")


class S3BatchOutputSerializer(serializers.Serializer):
    presignedUrls = serializers.DictField(child=serializers.URLField())


class S3CompletePartSerializer(serializers.Serializer):
    PartNumber = serializers.IntegerField(min_value=1, max_value=services.MAX_PARTS)
    ETag = serializers.CharField(max_length=256)


class S3CompleteInputSerializer(serializers.Serializer):
    parts = S3CompletePartSerializer(many=True, allow_empty=False, max_length=services.MAX_PARTS)


class S3CompleteOutputSerializer(UploadResultSerializer):
    location = serializers.CharField()
    key = serializers.CharField(help_text="the object key, as Uppy reads it; the same as object_key")


def _key(request: Request) -> str:
    return validated(S3KeySerializer, request.query_params, code="invalid_key")["key"]


class S3MultipartCreateApi(ApiView):
    throttle_classes = (UploadThrottle,)

    @extend_schema(operation_id="uploads_s3_multipart_create",
                   summary="Start a resumable upload (Uppy Companion shape)",
                   request=S3CreateInputSerializer,
                   responses={201: S3CreateOutputSerializer, **error_responses(400, 401, 413, 429, 503)})
    def post(self, request: Request) -> Response:
        data = validated(S3CreateInputSerializer, request.data)
        created = resumable.s3_multipart_create(owner=request.user, filename=data["filename"],
                                                content_type=data["type"], metadata=data["metadata"])
        return Response(S3CreateOutputSerializer(created).data, status=status.HTTP_201_CREATED)


KEY_PARAM = OpenApiParameter("key", str, required=True, description="the key the create answered")


class S3MultipartUploadApi(ApiView):
    throttle_classes = (UploadPartThrottle,)

    @extend_schema(operation_id="uploads_s3_multipart_list_parts", summary="The parts stored so far (to resume)",
                   parameters=[KEY_PARAM],
                   responses={200: S3PartSerializer(many=True), **error_responses(400, 401, 404, 409, 429, 503)})
    def get(self, request: Request, upload_id: str) -> Response:
        return Response(resumable.s3_multipart_list_parts(owner=request.user, upload_id=upload_id, key=_key(request)))

    @extend_schema(operation_id="uploads_s3_multipart_abort", summary="Abandon a resumable upload",
                   parameters=[KEY_PARAM],
                   responses={204: OpenApiResponse(description="aborted"),
                              **error_responses(400, 401, 404, 409, 429, 503)})
    def delete(self, request: Request, upload_id: str) -> Response:
        resumable.s3_multipart_abort(owner=request.user, upload_id=upload_id, key=_key(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class S3MultipartBatchApi(ApiView):
    throttle_classes = (UploadPartThrottle,)

    @extend_schema(operation_id="uploads_s3_multipart_sign_batch", summary="Presigned URLs for several parts",
                   parameters=[S3BatchQuerySerializer],
                   responses={200: S3BatchOutputSerializer, **error_responses(400, 401, 404, 409, 429, 503)})
    def get(self, request: Request, upload_id: str) -> Response:
        query = validated(S3BatchQuerySerializer, request.query_params, code="invalid_part_number")
        return Response(resumable.s3_multipart_sign_batch(owner=request.user, upload_id=upload_id, key=query["key"],
                                                          part_numbers=query["partNumbers"]))


class S3MultipartPartApi(ApiView):
    throttle_classes = (UploadPartThrottle,)

    @extend_schema(operation_id="uploads_s3_multipart_sign_part", summary="A presigned URL to PUT one part to",
                   parameters=[S3PartQuerySerializer],
                   responses={200: S3SignedPartSerializer, **error_responses(400, 401, 404, 409, 429, 503)})
    def get(self, request: Request, upload_id: str, part_number: str) -> Response:
        key = _key(request)
        query = validated(S3PartQuerySerializer, request.query_params, code="invalid_checksum")
        return Response(resumable.s3_multipart_sign_part(owner=request.user, upload_id=upload_id, key=key,
                                                         part_number=part_number,
                                                         checksum_sha256=query.get("checksumSHA256")))


class S3MultipartCompleteApi(ApiView):
    throttle_classes = (UploadPartThrottle,)

    @extend_schema(operation_id="uploads_s3_multipart_complete",
                   summary="Join the parts; the answer carries the object's SHA-256",
                   parameters=[KEY_PARAM], request=S3CompleteInputSerializer,
                   responses={200: S3CompleteOutputSerializer, **error_responses(400, 401, 404, 409, 413, 429, 503)})
    def post(self, request: Request, upload_id: str) -> Response:
        key = _key(request)
        data = validated(S3CompleteInputSerializer, request.data, code="invalid_parts")
        result = resumable.s3_multipart_complete(owner=request.user, upload_id=upload_id, key=key,
                                                 parts=[dict(p) for p in data["parts"]])
        return Response({**result.as_dict(), "key": result.object_key,
                         "location": resumable.object_location(result.bucket, result.object_key)})
