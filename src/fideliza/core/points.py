"""Points are integers; conversion from money follows an explicit rounding policy."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from enum import StrEnum

from fideliza.core.errors import ValidationError


class Rounding(StrEnum):
    """How a fractional number of points becomes an integer."""

    FLOOR = "floor"
    HALF_UP = "half_up"
    HALF_EVEN = "half_even"
    CEILING = "ceiling"


_DECIMAL_MODES = {
    Rounding.FLOOR: ROUND_FLOOR,
    Rounding.HALF_UP: ROUND_HALF_UP,
    Rounding.HALF_EVEN: ROUND_HALF_EVEN,
    Rounding.CEILING: ROUND_CEILING,
}


def round_points(value: Decimal, rounding: Rounding = Rounding.FLOOR) -> int:
    """Rounds a Decimal number of points to an integer with the given policy."""
    return int(value.to_integral_value(rounding=_DECIMAL_MODES[Rounding(rounding)]))


def require_points(value: object, *, field: str = "points") -> int:
    """Returns `value` as points (an int), refusing floats, bools and non-integers."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"must be an integer number of points, got {value!r}", field=field)
    return value


def proportional_share(total: int, part: Decimal, whole: Decimal) -> int:
    """Returns floor(total × part / whole) exactly (used so repeated shares never exceed total)."""
    if whole <= 0:
        return 0
    return int((Decimal(total) * part / whole).to_integral_value(rounding=ROUND_FLOOR))
