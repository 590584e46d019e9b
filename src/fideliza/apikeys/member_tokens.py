"""Short-lived signed member tokens, for the member portal and apps (no I/O).

An app's server, which holds a `pos` key, asks for a token for the member who signed in to it
and hands the token to the app; the app then calls `/v1/me/…` with it and sees that member
only. A token reads `fzm_<claims>.<signature>`: the claims (program, member, issued, expires,
a random id for the logs) as base64url JSON, signed with HMAC-SHA256 under the server's
secret key. Nothing is stored: a token is valid until it expires (minutes, at most a day), and
the member's status is checked on every request, so closing a member shuts their tokens out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fideliza.apikeys.errors import Unauthenticated
from fideliza.core.errors import ValidationError

TOKEN_TAG = "fzm_"
DEFAULT_TTL = timedelta(minutes=15)
MAX_TTL = timedelta(hours=24)
MIN_SECRET_LENGTH = 32
_INVALID = "send a valid member token as `Authorization: Bearer fzm_…`"


@dataclass(frozen=True, slots=True)
class MemberClaims:
    """Who a member token speaks for, and until when."""

    program_id: int
    member_id: int
    issued_at: datetime
    expires_at: datetime
    token_id: str


def is_member_token(value: str) -> bool:
    return value.startswith(TOKEN_TAG)


def check_secret(secret: str) -> bytes:
    """The signing key; a short secret would make forging tokens a matter of guessing it."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValidationError(
            f"must be at least {MIN_SECRET_LENGTH} characters", field="FIDELIZA_SECRET_KEY"
        )
    # A key of its own for member tokens, so a signature made for another purpose with the
    # same secret (survey links, …) can never be replayed as a token.
    return hmac.new(secret.encode(), b"fideliza member token v1", hashlib.sha256).digest()


def sign(*, program_id: int, member_id: int, now: datetime, ttl: timedelta, secret: str) -> str:
    """A token for `member_id` valid for `ttl` (1 minute to 24 hours)."""
    if not timedelta(minutes=1) <= ttl <= MAX_TTL:
        raise ValidationError("must be between 1 minute and 24 hours", field="ttl_minutes")
    claims = {
        "v": 1,
        "p": program_id,
        "m": member_id,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": secrets.token_urlsafe(9),
    }
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{TOKEN_TAG}{body}.{_signature(body, check_secret(secret))}"


def verify(token: str, *, secret: str, now: datetime) -> MemberClaims:
    """The claims of a genuine, unexpired token; one error for forged, malformed or expired."""
    key = check_secret(secret)
    if not is_member_token(token) or token.count(".") != 1:
        raise Unauthenticated(_INVALID)
    body, signature = token[len(TOKEN_TAG) :].split(".")
    if not hmac.compare_digest(signature, _signature(body, key)):
        raise Unauthenticated(_INVALID)
    try:  # signed by us, so well formed unless the format changed
        claims = json.loads(_unb64(body))
        found = MemberClaims(
            program_id=int(claims["p"]),
            member_id=int(claims["m"]),
            issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            token_id=str(claims["jti"]),
        )
    except (ValueError, KeyError, TypeError):
        raise Unauthenticated(_INVALID) from None
    if claims.get("v") != 1:
        raise Unauthenticated(_INVALID)
    # Past the signature check the caller holds a real token: saying it expired is safe.
    if found.expires_at <= now:
        raise Unauthenticated("this member token has expired; ask the app for a new one")
    return found


def _signature(body: str, key: bytes) -> str:
    return _b64(hmac.new(key, (TOKEN_TAG + body).encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
