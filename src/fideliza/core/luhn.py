"""Luhn check digits for loyalty card numbers."""

from __future__ import annotations


def luhn_check_digit(digits: str) -> str:
    """Returns the Luhn check digit to append to `digits`."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 0:  # every second digit from the right, counting the check digit
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def is_valid_luhn(number: str) -> bool:
    """Tells whether `number` (digits only) ends with a correct Luhn check digit."""
    if len(number) < 2 or not number.isdigit():
        return False
    return luhn_check_digit(number[:-1]) == number[-1]
