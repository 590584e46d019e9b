"""Gift cards and e-wallets, the pure part: kinds, states, account codes, PINs, refund limits."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from fideliza.core.errors import InvalidState, ValidationError


class AccountKind(StrEnum):
    """A customer's money (a card or a wallet) or one of the program's system accounts."""

    GIFT_CARD = "gift_card"
    WALLET = "wallet"
    # System accounts, one per program and currency. Money comes from `issued` (value sold:
    # cards issued and topped up) or `granted` (value given: cashback, goodwill), and goes to
    # `spent` (at a till) or `breakage` (left on a card when it expired).
    ISSUED = "issued"
    GRANTED = "granted"
    SPENT = "spent"
    BREAKAGE = "breakage"


SYSTEM_KINDS = (AccountKind.ISSUED, AccountKind.GRANTED, AccountKind.SPENT, AccountKind.BREAKAGE)


class TxKind(StrEnum):
    ISSUE = "issue"
    TOP_UP = "top_up"
    CREDIT = "credit"
    SPEND = "spend"
    REFUND = "refund"
    EXPIRE = "expire"


class CardStatus(StrEnum):
    """`frozen` refuses spending and top-ups (a suspected fraud) until unfrozen; `closed` is
    final."""

    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


def system_account_code(kind: AccountKind, currency: str) -> str:
    return f"{kind.value}:{currency}"


def wallet_account_code(member_id: int, currency: str) -> str:
    return f"wallet:{member_id}:{currency}"


def card_account_code(code_hash: str) -> str:
    return f"gift_card:{code_hash[:32]}"


def code_hash(normalized_code: str) -> str:
    """What is stored of a card's code: its SHA-256 (a code has 65 random bits, so a leaked
    table does not give the codes back)."""
    return hashlib.sha256(normalized_code.encode()).hexdigest()


def code_hint(normalized_code: str) -> str:
    """The last four characters, to tell cards apart on a screen or a receipt."""
    return normalized_code[-4:]


# --- PINs -------------------------------------------------------------------------------------

_PIN = re.compile(r"^[0-9]{4,8}$")
_PIN_ITERATIONS = 50_000


def require_pin(pin: str, *, field: str = "pin") -> str:
    if not _PIN.match(pin):
        raise ValidationError("must be 4 to 8 digits", field=field)
    return pin


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    """A salted PBKDF2-SHA256 of the PIN, stored as `pbkdf2_sha256$iterations$salt$hash`."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, _PIN_ITERATIONS)
    return f"pbkdf2_sha256${_PIN_ITERATIONS}${salt.hex()}${digest.hex()}"


# Verified against when a card is unknown, so an unknown code costs as long as a wrong PIN.
_DECOY = hash_pin("0000", salt=b"\x00" * 16)


def verify_pin(pin: str | None, stored: str | None) -> bool:
    """Whether `pin` matches `stored` (constant time; `stored=None` checks against a decoy)."""
    _, iterations, salt, expected = (stored or _DECOY).split("$")
    digest = hashlib.pbkdf2_hmac(
        "sha256", (pin or "").encode(), bytes.fromhex(salt), int(iterations)
    )
    return stored is not None and pin is not None and hmac.compare_digest(digest.hex(), expected)


# --- rules ------------------------------------------------------------------------------------


def require_positive(amount: Decimal, *, field: str = "amount") -> Decimal:
    if amount <= 0:
        raise ValidationError(f"must be positive, got {amount}", field=field)
    return amount


def require_usable(
    *, status: str, expires_at: datetime | None, now: datetime, spending: bool
) -> None:
    """Refuses a card that is closed, expired, or (for spending and top-ups) frozen."""
    if status == CardStatus.CLOSED or (spending and status == CardStatus.FROZEN):
        raise InvalidState(f"the card is {status}", field="code", code=f"card_{status}")
    if expires_at is not None and expires_at <= now:
        raise InvalidState(
            f"the card expired at {expires_at.isoformat()}", field="code", code="card_expired"
        )


def refundable(*, spent: Decimal, refunded: Decimal) -> Decimal:
    """What is left to refund of a spend (partial refunds add up to the spend, never more)."""
    return spent - refunded
