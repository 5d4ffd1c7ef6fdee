"""Standard Webhooks signatures (https://www.standardwebhooks.com/): secrets and headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105  (the prefix every secret carries, not a secret)
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes


def secret_generate() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, *, message_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the secret's decoded bytes."""
    digest = hmac.new(_key(secret), f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_in_use: list[str], *, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three webhook-* headers; several secrets (during a rotation's grace) give one
    signature each, space-separated, and a receiver accepts any that matches."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id=message_id, timestamp=timestamp, body=body)
                                      for s in secrets_in_use),
    }
