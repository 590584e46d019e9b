"""Purchases and returns as plain values, validated without any I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from fideliza.core.clock import parse_timestamp
from fideliza.core.errors import ValidationError
from fideliza.core.money import require_currency, to_money


@dataclass(frozen=True, slots=True)
class Item:
    """One basket line: `quantity` units of `sku` at `unit_price` each."""

    sku: str
    quantity: int
    unit_price: Decimal
    category: str | None = None

    @property
    def total(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True, slots=True)
class PurchaseInput:
    """A purchase as a till or a file sends it; `member_ref` is the member's external id."""

    external_id: str
    member_ref: str
    occurred_at: datetime
    amount: Decimal
    currency: str
    channel: str | None = None
    store: str | None = None
    items: tuple[Item, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """A SHA-256 of what changes the outcome (a canonical repr: same content, same digest)."""
        content = (
            self.member_ref,
            self.occurred_at.isoformat(),
            str(self.amount),
            self.currency,
            self.channel,
            self.store,
            tuple((i.sku, i.category, i.quantity, str(i.unit_price)) for i in self.items),
            json.dumps(dict(self.attributes), sort_keys=True, default=str)
            if self.attributes
            else "",
        )
        return hashlib.sha256(repr(content).encode()).hexdigest()


def _require_text(value: object, field_name: str, *, optional: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise ValidationError("is required", field=field_name)
    if not isinstance(value, str | int):
        raise ValidationError(f"must be a string, got {value!r}", field=field_name)
    return str(value).strip()


def parse_item(raw: Mapping[str, Any], currency: str, *, field_prefix: str) -> Item:
    """Validates one basket line; errors name the line's field (e.g. `items[2].quantity`)."""
    if not isinstance(raw, Mapping):
        raise ValidationError(
            "must be an object with sku, quantity and unit_price", field=field_prefix
        )
    sku = _require_text(raw.get("sku"), f"{field_prefix}.sku")
    quantity = raw.get("quantity", 1)
    if (
        isinstance(quantity, str)
        and quantity.strip().lstrip("-").isascii()
        and quantity.strip().lstrip("-").isdigit()
    ):
        quantity = int(quantity)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise ValidationError(
            f"must be an integer, got {quantity!r}", field=f"{field_prefix}.quantity"
        )
    if quantity <= 0:
        raise ValidationError(f"must be positive, got {quantity}", field=f"{field_prefix}.quantity")
    unit_price = to_money(raw.get("unit_price"), currency, field=f"{field_prefix}.unit_price")
    if unit_price < 0:
        raise ValidationError("must not be negative", field=f"{field_prefix}.unit_price")
    category = _require_text(raw.get("category"), f"{field_prefix}.category", optional=True)
    assert sku is not None
    return Item(sku=sku, quantity=quantity, unit_price=unit_price, category=category)


def parse_purchase(raw: Mapping[str, Any], *, program_currency: str) -> PurchaseInput:
    """Validates a purchase payload; every error names the field in error."""
    external_id = _require_text(raw.get("external_id"), "external_id")
    member_ref = _require_text(raw.get("member_id"), "member_id")
    occurred_at = parse_timestamp(raw.get("occurred_at"), field="occurred_at")
    currency = require_currency(raw.get("currency", program_currency), field="currency")
    if currency != program_currency:
        raise ValidationError(
            f"is {currency} but the program's currency is {program_currency}", field="currency"
        )
    amount = to_money(raw.get("amount"), currency, field="amount")
    if amount < 0:
        raise ValidationError("must not be negative (send a return instead)", field="amount")
    raw_items: Sequence[Mapping[str, Any]] = raw.get("items") or ()
    if not isinstance(raw_items, Sequence) or isinstance(raw_items, str):
        raise ValidationError("must be a list of items", field="items")
    items = tuple(
        parse_item(item, currency, field_prefix=f"items[{index}]")
        for index, item in enumerate(raw_items)
    )
    assert external_id is not None and member_ref is not None
    return PurchaseInput(
        external_id=external_id,
        member_ref=member_ref,
        occurred_at=occurred_at,
        amount=amount,
        currency=currency,
        channel=_require_text(raw.get("channel"), "channel", optional=True),
        store=_require_text(raw.get("store"), "store", optional=True),
        items=items,
        attributes=dict(raw.get("attributes") or {}),
    )
