"""Money is a Decimal quantized to its currency's minor unit; never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from fideliza.core.errors import ValidationError

# ISO 4217 minor units for the currencies whose exponent is not 2.
_MINOR_UNITS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0, "BHD": 3, "KWD": 3, "TND": 3}


def minor_units(currency: str) -> int:
    """Returns the number of decimal places of `currency` (2 unless ISO 4217 says otherwise)."""
    return _MINOR_UNITS.get(currency, 2)


def require_currency(value: object, *, field: str = "currency") -> str:
    """Returns an ISO 4217-shaped currency code or raises a ValidationError naming `field`."""
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha() or not value.isupper():
        raise ValidationError(f"must be a 3-letter ISO 4217 code, got {value!r}", field=field)
    return value


def to_money(value: object, currency: str, *, field: str = "amount") -> Decimal:
    """Parses `value` (str, int or Decimal; never float) into a Decimal quantized to `currency`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError("is required", field=field)
    if isinstance(value, bool | float):
        raise ValidationError(
            f"must be a decimal string or integer, not a float ({value!r})", field=field
        )
    try:
        amount = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise ValidationError(f"is not a decimal number: {value!r}", field=field) from None
    if not amount.is_finite():
        raise ValidationError(f"must be a finite number, got {value!r}", field=field)
    exponent = Decimal(1).scaleb(-minor_units(currency))
    if amount.adjusted() >= 14:  # NUMERIC(18, 4) holds 14 digits before the point
        raise ValidationError(f"is too large: {value!r}", field=field)
    try:
        quantized = amount.quantize(exponent, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        raise ValidationError(f"is too large: {value!r}", field=field) from None
    if quantized != amount:
        raise ValidationError(
            f"has more decimals than {currency} allows ({minor_units(currency)}): {value!r}",
            field=field,
        )
    return quantized
