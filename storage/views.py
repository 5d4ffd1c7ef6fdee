"""Downloads for the local-filesystem backend: the stand-in for S3 presigned URLs."""

from django.core import signing
from django.http import FileResponse, Http404

from . import local
from .keys import content_disposition


def local_download(request, token: str):
    try:
        data = local.unsign(token)
        stream = local.open_read(data["b"], data["k"])
    except (signing.BadSignature, local.ObjectNotFound, local.StorageError):
        raise Http404("link expired or invalid") from None
    response = FileResponse(stream, content_type="application/octet-stream")
    if data.get("f"):
        response["Content-Disposition"] = content_disposition(data["f"])
    return response
