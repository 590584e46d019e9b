"""Webhooks without I/O: endpoint validation, the SSRF address policy, Standard Webhooks
signatures, event matching and the retry schedule.

Signatures follow the Standard Webhooks specification (https://www.standardwebhooks.com/):
the secret reads `whsec_<base64 of 32 random bytes>`; each request carries `webhook-id` (the
same on every retry of one event), `webhook-timestamp` (Unix seconds) and `webhook-signature`
= `v1,<base64 of HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}")>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from fideliza.core.errors import ValidationError

SECRET_TAG = "whsec_"
SECRET_BYTES = 32
MAX_URL_LENGTH = 2000
MAX_EVENT_TYPES = 50
# `member.enrolled`, `points.earned`, a prefix wildcard `points.*`, or `*` for every event.
_EVENT_TYPE = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?)$")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DeliveryStatus(StrEnum):
    """Where a delivery is: waiting for an attempt, done, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the last attempt, or the destination is not allowed
    CANCELLED = "cancelled"  # the endpoint was deactivated before delivery


@dataclass(frozen=True, slots=True)
class Destination:
    """A validated endpoint URL: its scheme, host and port."""

    url: str
    scheme: str
    host: str
    port: int


def parse_url(url: object) -> Destination:
    """Validates an endpoint URL: http(s), a host, no credentials, no fragment."""
    if not isinstance(url, str) or not url.strip():
        raise ValidationError("is required", field="url")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"must not exceed {MAX_URL_LENGTH} characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ValidationError(f"is not a valid URL ({error})", field="url") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValidationError("must be an http:// or https:// URL", field="url")
    host = parts.hostname
    if not host:
        raise ValidationError("must name a host", field="url")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("must not carry credentials (user:password@)", field="url")
    if parts.fragment:
        raise ValidationError("must not have a #fragment", field="url")
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise ValidationError("must not contain spaces or control characters", field="url")
    return Destination(
        url=url,
        scheme=scheme,
        host=host,
        port=port if port is not None else (443 if scheme == "https" else 80),
    )


def literal_address(host: str) -> IpAddress | None:
    """The address a host names literally (`10.0.0.1`, `[::1]`), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_forbidden(address: IpAddress) -> bool:
    """Whether an address must not be called without the operator's leave: loopback, private,
    link-local (cloud metadata at 169.254.169.254), multicast, shared (CGNAT), reserved,
    unspecified — anything not globally routable."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_forbidden(address.ipv4_mapped)
    return (
        not address.is_global
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def check_addresses(host: str, addresses: Iterable[str], *, allow_private: bool) -> None:
    """Refuses a host when any of its addresses is forbidden (and private ones are not
    allowed), or when it has none."""
    found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    if not found:
        raise ValidationError(f"host {host!r} does not resolve to any address", field="url")
    if allow_private:
        return
    for address in found:
        if is_forbidden(address):
            raise ValidationError(
                f"host {host!r} resolves to {address}, a loopback, private, link-local or "
                "otherwise non-public address; webhooks are not sent there unless the "
                "operator allows it (FIDELIZA_WEBHOOK_ALLOW_PRIVATE_ADDRESSES)",
                field="url",
                code="forbidden_destination",
            )


def parse_event_types(values: object) -> list[str]:
    """Validates the event types an endpoint subscribes to; returns them sorted, unique."""
    if not isinstance(values, list | tuple) or not values:
        raise ValidationError("give at least one event type (or '*')", field="event_types")
    if len(values) > MAX_EVENT_TYPES:
        raise ValidationError(f"at most {MAX_EVENT_TYPES} event types", field="event_types")
    found: set[str] = set()
    for index, value in enumerate(values):
        if not isinstance(value, str) or len(value) > 100 or not _EVENT_TYPE.match(value):
            raise ValidationError(
                "must be an event type like 'points.earned', a prefix like 'points.*', or '*'",
                field=f"event_types[{index}]",
            )
        found.add(value)
    return sorted(found)


def matches(subscribed: Iterable[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to `subscribed` receives `event_type`."""
    for pattern in subscribed:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def new_secret() -> str:
    """A signing secret: `whsec_` + base64 of 32 bytes from the OS's CSPRNG."""
    return SECRET_TAG + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_…` secret stands for."""
    return base64.b64decode(secret.removeprefix(SECRET_TAG))


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one request."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def message_id(outbox_id: int) -> str:
    """The `webhook-id` of an event: the same for every endpoint and every retry."""
    return f"msg_{outbox_id}"


def body_of(*, outbox_id: int, event_type: str, occurred_at: datetime, data: Any) -> bytes:
    """The JSON body of an event (compact; the exact bytes that are signed and sent)."""
    envelope = {
        "id": message_id(outbox_id),
        "type": event_type,
        "timestamp": occurred_at.isoformat(),
        "data": data,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def headers_for(*, secret: str, message_id: str, now: datetime, body: bytes) -> dict[str, str]:
    """The headers of one signed request."""
    timestamp = int(now.timestamp())
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(
            secret=secret, message_id=message_id, timestamp=timestamp, body=body
        ),
    }


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: `base` after the 1st failure, doubling, at most `cap`; gives up
    after `max_attempts` attempts."""

    max_attempts: int = 8
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=12)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValidationError("must be at least 1", field="max_attempts")

    def next_attempt(self, *, attempts: int, now: datetime) -> datetime | None:
        """When to try again after `attempts` failed attempts (None: give up)."""
        if attempts >= self.max_attempts:
            return None
        return now + min(self.cap, self.base * (2 ** (attempts - 1)))


def is_success(status_code: int) -> bool:
    """Any 2xx acknowledges a delivery; everything else is retried."""
    return 200 <= status_code < 300
