"""API keys and request idempotency without I/O: key format, hashing, scopes, claim decisions.

A key reads `fzk_<prefix>_<secret>`: the prefix (10 lowercase letters and digits) is public,
stored in clear and used to find the row and to name the key in listings and logs; the secret
(43 base62 characters, ~256 bits from the OS's CSPRNG) is never stored, only the SHA-256 of
the whole key. A fast hash is enough here, and right: slow password hashes (bcrypt, argon2)
exist to make guessing *low-entropy* human passwords expensive, but nobody can enumerate 2^256
secrets whatever the hash costs, while a slow hash would add tens of milliseconds of CPU to
every API request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from fideliza.apikeys.errors import Forbidden
from fideliza.core.errors import ValidationError

KEY_TAG = "fzk"
PREFIX_LENGTH = 10
SECRET_LENGTH = 43  # 43 base62 characters: log2(62) * 43 ≈ 256 bits
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_KEY_LENGTH = len(KEY_TAG) + 1 + PREFIX_LENGTH + 1 + SECRET_LENGTH


class Scope(StrEnum):
    """What a key may do: `read` reads; `pos` (tills, shops, apps) also writes purchases,
    returns, events, members and redemptions; `admin` also manages keys and runs jobs."""

    ADMIN = "admin"
    POS = "pos"
    READ = "read"


# Each scope includes the ones below it: a till must read a balance before it redeems.
GRANTS: dict[Scope, frozenset[Scope]] = {
    Scope.ADMIN: frozenset({Scope.ADMIN, Scope.POS, Scope.READ}),
    Scope.POS: frozenset({Scope.POS, Scope.READ}),
    Scope.READ: frozenset({Scope.READ}),
}


def parse_scopes(values: Iterable[object] | str) -> list[Scope]:
    """Validates scope names (a list, or "pos,read" as a CLI gives them): at least one, none
    unknown; returns them sorted and unique."""
    if isinstance(values, str):
        values = [name.strip() for name in values.split(",") if name.strip()]
    found: set[Scope] = set()
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise ValidationError(f"must be a scope name, got {value!r}", field=f"scopes[{index}]")
        try:
            found.add(Scope(value))
        except ValueError:
            raise ValidationError(
                f"unknown scope {value!r} (admin, pos, read)", field=f"scopes[{index}]"
            ) from None
    if not found:
        raise ValidationError("give at least one scope (admin, pos, read)", field="scopes")
    return sorted(found)


def granted(scopes: Iterable[str]) -> frozenset[Scope]:
    """Every scope that a key with `scopes` holds, implied ones included."""
    held: set[Scope] = set()
    for name in scopes:
        try:
            held |= GRANTS[Scope(name)]
        except ValueError:
            continue  # a scope this version does not know grants nothing
    return frozenset(held)


def require_scope(scopes: Iterable[str], needed: Scope) -> None:
    """Refuses an operation the key's scopes do not allow (function-level authorization)."""
    if needed not in granted(scopes):
        raise Forbidden(f"this API key lacks the {needed} scope", field="scope")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: `plaintext` is shown once; only `prefix` and `digest` are kept."""

    prefix: str
    plaintext: str
    digest: str


def new_key() -> NewKey:
    """Generates a key from the operating system's CSPRNG."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    plaintext = f"{KEY_TAG}_{prefix}_{secret}"
    return NewKey(prefix=prefix, plaintext=plaintext, digest=key_digest(plaintext))


def key_digest(plaintext: str) -> str:
    """The SHA-256 (hex) that is stored instead of the key."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def prefix_of(plaintext: str) -> str | None:
    """The public prefix of a well-formed key, or None when `plaintext` cannot be a key."""
    if len(plaintext) != _KEY_LENGTH or not plaintext.isascii():
        return None
    tag, prefix, secret = (
        plaintext[:3],
        plaintext[4 : 4 + PREFIX_LENGTH],
        plaintext[-SECRET_LENGTH:],
    )
    if (
        tag != KEY_TAG
        or plaintext[3] != "_"
        or plaintext[4 + PREFIX_LENGTH] != "_"
        or not all(ch in _PREFIX_ALPHABET for ch in prefix)
        or not all(ch in _SECRET_ALPHABET for ch in secret)
    ):
        return None
    return prefix


def digest_matches(plaintext: str, digest: str) -> bool:
    """Compares in constant time, so response times tell nothing about the stored digest."""
    return hmac.compare_digest(key_digest(plaintext), digest)


def display(prefix: str) -> str:
    """How a key is named in listings: its public part only."""
    return f"{KEY_TAG}_{prefix}_…"


# --- idempotency ------------------------------------------------------------------------------


class RequestStatus(StrEnum):
    IN_FLIGHT = "in_flight"  # claimed by a worker that has not answered yet
    DONE = "done"  # answered: the stored response is replayed


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """What the decision needs to know about an idempotency record already there."""

    fingerprint: str
    status: RequestStatus
    locked_until: datetime | None
    expires_at: datetime
    response_status: int | None
    response_body: str | None
    response_type: str | None


@dataclass(frozen=True, slots=True)
class Claimed:
    """This request owns the key: run it, then store its response (`token` proves ownership)."""

    record_id: int
    token: str


@dataclass(frozen=True, slots=True)
class Replay:
    """The key was answered before, for the same request: send that answer again."""

    status: int
    body: str
    media_type: str


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was used before for a different request."""


@dataclass(frozen=True, slots=True)
class InFlight:
    """Another request with this key is being processed right now."""

    retry_after_seconds: int


@dataclass(frozen=True, slots=True)
class TakeOver:
    """The record is expired or its worker died: it may be claimed afresh."""


Decision = Replay | Mismatch | InFlight | TakeOver
Claim = Claimed | Replay | Mismatch | InFlight


def decide(stored: StoredRequest, *, fingerprint: str, now: datetime) -> Decision:
    """What to do with a request whose key is already recorded."""
    if stored.expires_at <= now:
        return TakeOver()  # past retention: as if it had been purged
    if not hmac.compare_digest(stored.fingerprint, fingerprint):
        return Mismatch()
    if stored.status == RequestStatus.DONE:
        assert stored.response_status is not None and stored.response_body is not None
        return Replay(
            status=stored.response_status,
            body=stored.response_body,
            media_type=stored.response_type or "application/json",
        )
    if stored.locked_until is not None and stored.locked_until > now:
        return InFlight(retry_after_seconds=1)
    # The worker that claimed it stopped without answering or releasing (a crash): its
    # transaction rolled back, so running the request again is safe.
    return TakeOver()
