"""Payment-link tokens for the WAP page and QR codes.

A token is derived from the order id under the service key, so the service can show the same
link again (order response, QR code) while the database keeps only its SHA-256 for lookup:
someone who reads the database cannot build a working link without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

__all__ = ["link_token", "looks_like_token", "payment_url", "token_hash"]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


def link_token(key: bytes, order_id: str) -> str:
    digest = hmac.new(key, b"wap-link\x1f" + order_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()  # 192 bits, 32 characters


def looks_like_token(text: str) -> bool:
    return bool(_TOKEN.fullmatch(text))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def payment_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url}/w/{token}"
