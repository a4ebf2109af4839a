"""Opaque, tamper-evident keyset cursors.

A cursor is `base64url(json([sort, *last_key])) + "." + base64url(hmac)`: clients cannot read
meaning into it or forge one, and the server knows which sort it belongs to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from app.core.errors import Unprocessable

_SIGNATURE_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"cursor:" + secret.encode()).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, sort: str, key: list[Any]) -> str:
        payload = json.dumps([sort, *key], separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, cursor: str, sort: str) -> list[Any]:
        return self.decode_any(cursor, (sort,))[1]

    def decode_any(self, cursor: str, sorts: tuple[str, ...]) -> tuple[str, list[Any]]:
        """The sort a cursor belongs to, one of `sorts`, and its key."""
        invalid = Unprocessable("The cursor is invalid", loc=["query", "cursor"])
        try:
            encoded_payload, encoded_signature = cursor.split(".", 1)
            payload = _unb64(encoded_payload)
            signature = _unb64(encoded_signature)
        except (ValueError, binascii.Error):
            raise invalid from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise invalid
        try:
            values = json.loads(payload)
        except ValueError:
            raise invalid from None
        if not isinstance(values, list) or not values or values[0] not in sorts:
            raise Unprocessable("The cursor belongs to another sort order", loc=["query", "cursor"])
        return values[0], values[1:]
