"""Card numbers and QR payloads: 16 digits, a Luhn check digit that catches typos."""

from __future__ import annotations

import pytest

from fideliza.core.luhn import is_valid_luhn
from fideliza.members.domain import (
    CARD_LENGTH,
    CARD_PREFIX,
    is_card_number,
    new_card_number,
    normalize_card_number,
    qr_payload,
)

# Body 7 + 12345678901234; the Luhn sum of the body (doubling from the right) is 68, so the
# check digit is (10 - 68 % 10) % 10 = 2.
KNOWN = "7123456789012342"


def test_a_new_card_is_sixteen_digits_with_our_prefix_and_a_luhn_check_digit() -> None:
    for _ in range(200):
        number = new_card_number()
        assert len(number) == CARD_LENGTH == 16
        assert number.isdigit() and number.startswith(CARD_PREFIX)
        assert is_valid_luhn(number) and is_card_number(number)


def test_the_check_digit_is_the_luhn_digit_of_the_body() -> None:
    assert new_card_number("12345678901234") == KNOWN
    assert new_card_number("00000000000000") == "7000000000000005"


@pytest.mark.parametrize(
    "body", ["1234567890123", "123456789012345", "1234567890123a", "12345 7890123"]
)
def test_a_body_that_is_not_fourteen_digits_is_refused(body: str) -> None:
    with pytest.raises(ValueError, match="15 digits"):
        new_card_number(body)


def test_normalize_strips_the_spaces_and_dashes_people_type() -> None:
    assert normalize_card_number("7123 4567 8901 2342") == KNOWN
    assert normalize_card_number("7123-4567-8901-2342") == KNOWN
    assert normalize_card_number(" 7123 - 4567 8901-2342 ") == KNOWN
    assert is_card_number("7123 4567 8901 2342")
    assert is_card_number("7123-4567-8901-2342")


def test_every_one_digit_typo_is_rejected() -> None:
    for position in range(CARD_LENGTH):
        for digit in "0123456789":
            if digit == KNOWN[position]:
                continue
            typo = KNOWN[:position] + digit + KNOWN[position + 1 :]
            assert not is_card_number(typo), typo


def test_a_transposition_of_adjacent_digits_is_rejected() -> None:
    swapped = KNOWN[0] + KNOWN[2] + KNOWN[1] + KNOWN[3:]  # 71… → 72…1…
    assert swapped == "7213456789012342"
    assert not is_card_number(swapped)
    # Every other adjacent transposition that changes the number is caught too, except 0↔9
    # (see the next test): KNOWN has "90" at positions 9-10.
    for i in range(CARD_LENGTH - 1):
        if KNOWN[i] == KNOWN[i + 1] or {KNOWN[i], KNOWN[i + 1]} == {"0", "9"}:
            continue
        moved = KNOWN[:i] + KNOWN[i + 1] + KNOWN[i] + KNOWN[i + 2 :]
        assert not is_card_number(moved), moved


def test_luhn_cannot_see_a_swap_of_adjacent_0_and_9() -> None:
    # The one blind spot of Luhn, asserted so nobody relies on it: 09 ↔ 90 keeps the sum.
    number = new_card_number("09000000000000")
    assert number[1:3] == "09"
    swapped = number[0] + "90" + number[3:]
    assert is_card_number(number) and is_card_number(swapped)


@pytest.mark.parametrize(
    "raw",
    [
        KNOWN[:-1],  # 15 digits
        KNOWN + "0",  # 17 digits
        "7123456789O12342",  # a letter O for a zero
        "",
        "   ",
        "7123 4567 8901 2342 9",
        "7123.4567.8901.2342",  # dots are not stripped
        "²" * 16,  # str.isdigit() says yes, int() says no: must be refused, not crash
        "７１２３４５６７８９０１２３４２",  # full-width digits: not a card number we issue
    ],
)
def test_anything_but_sixteen_ascii_digits_with_a_good_check_digit_is_not_a_card(
    raw: str,
) -> None:
    assert is_card_number(raw) is False


def test_the_qr_payload_names_the_program_and_the_card_and_nothing_else() -> None:
    assert qr_payload("cafe", KNOWN) == "FIDELIZA:cafe:7123456789012342"
    assert qr_payload("p-01", KNOWN).split(":") == ["FIDELIZA", "p-01", KNOWN]
