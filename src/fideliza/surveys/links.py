"""Single-use answer links: an HMAC-SHA256-signed token naming an invitation and its expiry.

Token: ``fzs1.<invitation id>.<expiry, epoch seconds>.<signature>`` (URL-safe, no padding).
The signature proves the server made the token; single use is the database's job (an
invitation is answered once), so a stolen token is worth one answer before its expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from fideliza.surveys.errors import InvalidLink, LinkExpired

_VERSION = "fzs1"
_TOKEN = re.compile(r"^fzs1\.([1-9][0-9]{0,18})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a valid token says: which invitation, valid until when."""

    invitation_id: int
    expires_at: datetime


def _signature(secret: bytes, invitation_id: int, expires: int) -> str:
    mac = hmac.new(secret, f"{_VERSION}.{invitation_id}.{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def sign(*, secret: bytes, invitation_id: int, expires_at: datetime) -> str:
    """The token of an invitation's answer link."""
    expires = int(expires_at.timestamp())
    return f"{_VERSION}.{invitation_id}.{expires}.{_signature(secret, invitation_id, expires)}"


def verify(*, secret: bytes, token: str, now: datetime) -> LinkClaim:
    """The claim of a token made with `secret`; `invalid_link` or `link_expired` otherwise."""
    found = _TOKEN.match(token or "")
    if found is None:
        raise InvalidLink("this survey link is not valid", field="token")
    invitation_id, expires = int(found.group(1)), int(found.group(2))
    expected = _signature(secret, invitation_id, expires)
    if not hmac.compare_digest(expected, found.group(3)):
        raise InvalidLink("this survey link is not valid", field="token")
    expires_at = datetime.fromtimestamp(expires, UTC)
    if now >= expires_at:
        raise LinkExpired("this survey link has expired", field="token")
    return LinkClaim(invitation_id, expires_at)
