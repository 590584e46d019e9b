"""The pure part of gift cards: PINs, card states, codes as stored, refund limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fideliza.core import codes
from fideliza.core.errors import InvalidState, ValidationError
from fideliza.giftcards.domain import (
    CardStatus,
    code_hash,
    code_hint,
    hash_pin,
    refundable,
    require_pin,
    require_positive,
    require_usable,
    verify_pin,
)

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def test_a_pin_hash_is_salted_and_verifies_only_its_pin() -> None:
    first, second = hash_pin("1234"), hash_pin("1234")
    assert first != second  # a salt each: equal PINs do not show in the table
    assert "1234" not in first
    assert verify_pin("1234", first) and verify_pin("1234", second)
    assert not verify_pin("1235", first)
    assert not verify_pin(None, first)


def test_verifying_against_no_stored_pin_is_always_false() -> None:
    # The decoy behind an unknown card: it costs the same time and never lets anyone in.
    assert not verify_pin("0000", None)
    assert not verify_pin(None, None)


@pytest.mark.parametrize("pin", ["", "123", "123456789", "12a4", " 1234", "１２３４"])
def test_pins_are_four_to_eight_ascii_digits(pin: str) -> None:
    with pytest.raises(ValidationError) as caught:
        require_pin(pin)
    assert caught.value.field == "pin"


@pytest.mark.parametrize("pin", ["0000", "12345678"])
def test_valid_pins_pass(pin: str) -> None:
    assert require_pin(pin) == pin


def test_the_stored_code_is_a_hash_and_a_hint_of_four() -> None:
    normalized = codes.normalize(codes.new_code())
    assert len(code_hash(normalized)) == 64 and normalized not in code_hash(normalized)
    assert code_hint(normalized) == normalized[-4:]
    assert code_hash(normalized) == code_hash(codes.normalize(normalized.lower()))


@pytest.mark.parametrize(
    ("status", "expires_at", "spending", "error_code"),
    [
        (CardStatus.CLOSED, None, False, "card_closed"),
        (CardStatus.CLOSED, None, True, "card_closed"),
        (CardStatus.FROZEN, None, True, "card_frozen"),
        (CardStatus.ACTIVE, NOW, True, "card_expired"),  # expiry is exclusive: at it, refused
        (CardStatus.ACTIVE, NOW - timedelta(days=1), False, "card_expired"),
    ],
)
def test_unusable_cards_are_refused_with_a_stable_code(
    status: CardStatus, expires_at: datetime | None, spending: bool, error_code: str
) -> None:
    with pytest.raises(InvalidState) as caught:
        require_usable(status=status, expires_at=expires_at, now=NOW, spending=spending)
    assert caught.value.code == error_code and caught.value.field == "code"


@pytest.mark.parametrize(
    ("status", "expires_at", "spending"),
    [
        (CardStatus.ACTIVE, None, True),
        (CardStatus.ACTIVE, NOW + timedelta(seconds=1), True),
        (CardStatus.FROZEN, None, False),  # a frozen card still takes a refund
    ],
)
def test_usable_cards_pass(status: CardStatus, expires_at: datetime | None, spending: bool) -> None:
    require_usable(status=status, expires_at=expires_at, now=NOW, spending=spending)


def test_amounts_must_be_positive() -> None:
    assert require_positive(Decimal("0.01")) == Decimal("0.01")
    for amount in (Decimal(0), Decimal("-1")):
        with pytest.raises(ValidationError) as caught:
            require_positive(amount)
        assert caught.value.field == "amount"


def test_refundable_is_what_the_refunds_have_not_taken_yet() -> None:
    assert refundable(spent=Decimal("10.00"), refunded=Decimal("3.33")) == Decimal("6.67")
    assert refundable(spent=Decimal("10.00"), refunded=Decimal("10.00")) == 0
