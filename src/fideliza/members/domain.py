"""Member rules without I/O: statuses, card numbers and QR payloads."""

from __future__ import annotations

import secrets
from enum import StrEnum

from fideliza.core.luhn import is_valid_luhn, luhn_check_digit

CARD_PREFIX = "7"  # ISO/IEC 7812: 7 = petroleum and other future industry assignments; ours
CARD_LENGTH = 16


class MemberStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # cannot earn or spend until reactivated
    CLOSED = "closed"  # final


ALLOWED_STATUS_CHANGES = {
    MemberStatus.ACTIVE: {MemberStatus.SUSPENDED, MemberStatus.CLOSED},
    MemberStatus.SUSPENDED: {MemberStatus.ACTIVE, MemberStatus.CLOSED},
    MemberStatus.CLOSED: set(),
}


def new_card_number(random_digits: str | None = None) -> str:
    """A 16-digit card number: prefix, 14 random digits, a Luhn check digit."""
    body = CARD_PREFIX + (random_digits or "".join(str(secrets.randbelow(10)) for _ in range(14)))
    if len(body) != CARD_LENGTH - 1 or not body.isdigit():
        raise ValueError("a card body is 15 digits")
    return body + luhn_check_digit(body)


def normalize_card_number(raw: str) -> str:
    """Strips spaces and dashes that people type or print on cards."""
    return "".join(ch for ch in raw if ch not in " -")


def is_card_number(raw: str) -> bool:
    """Tells whether `raw` (spaces, dashes allowed) is 16 ASCII digits with a good check digit."""
    number = normalize_card_number(raw)
    # isascii: str.isdigit() also accepts digits such as "²" that int() then refuses.
    return len(number) == CARD_LENGTH and number.isascii() and is_valid_luhn(number)


def qr_payload(program_code: str, card_number: str) -> str:
    """What the member's card QR encodes: the program and the card number (no secret)."""
    return f"FIDELIZA:{program_code}:{card_number}"
