"""One-time confirmation codes: six digits from ``secrets``, kept only as keyed digests.

The digest binds the code to one order, its amount, currency and package, so a code is
worthless for any other order, and a leaked database does not reveal codes without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass, fields

__all__ = ["BOUND_TO", "CODE_LENGTH", "CodeBinding", "code_digest", "code_in_reply",
           "code_matches", "new_code"]

CODE_LENGTH = 6
_CODE_REPLY = re.compile(rf"[0-9]{{{CODE_LENGTH}}}")


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


@dataclass(frozen=True)
class CodeBinding:
    """What a code is bound to. Its fields are named as the order's columns that hold them."""

    id: str  # the order's
    amount: int
    currency: str
    package_id: str | None


BOUND_TO = tuple(field.name for field in fields(CodeBinding))


def code_digest(key: bytes, code: str, bound: CodeBinding) -> str:
    message = "\x1f".join((bound.id, str(bound.amount), bound.currency, bound.package_id or "",
                           code)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def code_matches(key: bytes, code: str, digest: str, bound: CodeBinding) -> bool:
    return hmac.compare_digest(code_digest(key, code, bound), digest)


def code_in_reply(text: str) -> str | None:
    """Return the code if the SMS text is one, tolerating spaces and full-width digits."""
    normalized = "".join(unicodedata.normalize("NFKC", text).split())
    return normalized if _CODE_REPLY.fullmatch(normalized) else None
