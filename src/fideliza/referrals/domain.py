"""Referral rules without I/O: states, who counts as the same person, cycles, caps, periods."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from fideliza.core.errors import ValidationError

CODE_BITS = 60  # the least `fideliza.core.codes` accepts: far beyond guessing by trial


class ReferralState(StrEnum):
    PENDING = "pending"  # linked; the trigger has not happened yet
    QUALIFIED = "qualified"  # the trigger happened; paid once the return window has passed
    REWARDED = "rewarded"  # final
    REJECTED = "rejected"  # final, with a reason


class RejectReason(StrEnum):
    REFERRER_CAP = "referrer_cap"  # the referrer reached the program's cap for the period
    MEMBER_INACTIVE = "member_inactive"  # referrer or referred suspended/closed at payout


class Trigger(StrEnum):
    ENROLMENT = "enrolment"
    FIRST_PURCHASE = "first_purchase"


class CapPeriod(StrEnum):
    MONTH = "month"
    YEAR = "year"
    EVER = "ever"


@dataclass(frozen=True, slots=True)
class Identity:
    """What identifies a person across member accounts (normalized)."""

    emails: frozenset[str]
    phones: frozenset[str]
    cards: frozenset[str]


def normalize_email(raw: str) -> str:
    """Lower case, without a `+tag` (`ana+2@x.com` and `Ana@x.com` reach the same inbox)."""
    value = raw.strip().lower()
    local, at, domain = value.partition("@")
    if not at:
        return value
    local = local.split("+", 1)[0]
    if domain in {"gmail.com", "googlemail.com"}:
        local, domain = local.replace(".", ""), "gmail.com"  # Gmail ignores dots
    return f"{local}@{domain}"


def normalize_phone(raw: str) -> str:
    """Digits only, with a leading + kept (as members store them)."""
    value = raw.strip()
    digits = "".join(ch for ch in value if ch.isdigit())
    return f"+{digits}" if value.startswith("+") else digits


def identity(
    *, emails: Iterable[str | None], phones: Iterable[str | None], cards: Iterable[str]
) -> Identity:
    """The normalized identity of a member from their e-mails, phones and card numbers."""
    return Identity(
        emails=frozenset(normalize_email(e) for e in emails if e),
        phones=frozenset(normalize_phone(p) for p in phones if p),
        cards=frozenset(c for c in cards if c),
    )


def shared_identifier(a: Identity, b: Identity) -> str | None:
    """The kind of identifier two identities share (`email`, `phone`, `card`), or None."""
    if a.emails & b.emails:
        return "email"
    if a.phones & b.phones:
        return "phone"
    if a.cards & b.cards:
        return "card"
    return None


def closes_cycle(
    *, referrer_id: int, referred_id: int, referrer_of: Callable[[int], int | None]
) -> bool:
    """Tells whether linking referred ← referrer would close a cycle (A → B → … → A).

    `referrer_of(member)` gives who referred a member (None at the root of a chain).
    """
    if referrer_id == referred_id:
        return True
    seen: set[int] = set()
    current: int | None = referrer_id
    while current is not None and current not in seen:
        if current == referred_id:
            return True
        seen.add(current)
        current = referrer_of(current)
    return False


def period_start(period: CapPeriod, local_today: date) -> date | None:
    """The first local day of the cap period holding `local_today` (None: ever)."""
    if period is CapPeriod.MONTH:
        return local_today.replace(day=1)
    if period is CapPeriod.YEAR:
        return local_today.replace(month=1, day=1)
    return None


def require_code_text(raw: object) -> str:
    """A referral code as typed, refusing empty or absurdly long input."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError("is required", field="referral_code")
    if len(raw) > 32:
        raise ValidationError("is too long to be a referral code", field="referral_code")
    return raw
