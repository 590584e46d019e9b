"""Referral rules without a database: identities, cycles, cap periods, configuration."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fideliza.core.errors import ValidationError
from fideliza.core.validation import validate
from fideliza.referrals.domain import (
    CapPeriod,
    closes_cycle,
    identity,
    normalize_email,
    normalize_phone,
    period_start,
    require_code_text,
    shared_identifier,
)
from fideliza.referrals.schemas import ReferralConfig


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Ana@Example.com", "ana@example.com"),
        (" ana+promo@example.com ", "ana@example.com"),
        ("a.n.a+x@GoogleMail.com", "ana@gmail.com"),
        ("a.na@example.com", "a.na@example.com"),  # dots matter outside Gmail
        ("not-an-email", "not-an-email"),
    ],
)
def test_email_normalization(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


def test_phone_normalization_keeps_the_plus() -> None:
    assert normalize_phone("+34 (600) 111-222") == "+34600111222"
    assert normalize_phone("600 111 222") == "600111222"


@given(st.emails())
def test_email_normalization_is_idempotent(email: str) -> None:
    assert normalize_email(normalize_email(email)) == normalize_email(email)


def test_shared_identifiers_name_what_is_shared() -> None:
    ana = identity(emails=["ana@x.com"], phones=["+34600"], cards=["7000"])
    assert shared_identifier(ana, identity(emails=["ANA+1@x.com"], phones=[], cards=[])) == "email"
    assert shared_identifier(ana, identity(emails=[None], phones=["+34 600"], cards=[])) == "phone"
    assert shared_identifier(ana, identity(emails=[], phones=[], cards=["7000"])) == "card"
    assert shared_identifier(ana, identity(emails=["bea@x.com"], phones=[None], cards=[])) is None


# A forest of referrals: member i (> 0) was referred by parents[i] < i, or by nobody.
forests = st.lists(st.one_of(st.none(), st.integers(min_value=0)), min_size=1, max_size=30).map(
    lambda raw: [None] + [None if p is None else p % i for i, p in enumerate(raw[1:], start=1)]
)


@given(forests, st.data())
def test_a_link_closes_a_cycle_exactly_when_the_referred_is_an_ancestor(
    parents: list[int | None], data: st.DataObject
) -> None:
    referrer = data.draw(st.integers(min_value=0, max_value=len(parents) - 1))
    referred = data.draw(st.integers(min_value=0, max_value=len(parents) - 1))
    ancestors = set()
    current: int | None = referrer
    while current is not None:
        ancestors.add(current)
        current = parents[current]
    assert closes_cycle(
        referrer_id=referrer, referred_id=referred, referrer_of=lambda m: parents[m]
    ) == (referred in ancestors)


def test_a_newcomer_never_closes_a_cycle_and_a_member_cannot_refer_themselves() -> None:
    parents = {2: 1, 3: 2}
    assert not closes_cycle(referrer_id=3, referred_id=4, referrer_of=parents.get)
    assert closes_cycle(referrer_id=3, referred_id=1, referrer_of=parents.get)
    assert closes_cycle(referrer_id=5, referred_id=5, referrer_of=parents.get)


def test_cycle_walk_stops_on_corrupt_data() -> None:
    looping = {1: 2, 2: 1}  # a loop already stored must not hang the check
    assert not closes_cycle(referrer_id=1, referred_id=9, referrer_of=looping.get)


def test_cap_periods() -> None:
    day = date(2025, 3, 10)
    assert period_start(CapPeriod.MONTH, day) == date(2025, 3, 1)
    assert period_start(CapPeriod.YEAR, day) == date(2025, 1, 1)
    assert period_start(CapPeriod.EVER, day) is None


@pytest.mark.parametrize("raw", ["", "   ", None, 42, "X" * 33])
def test_code_text_is_required_and_bounded(raw: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        require_code_text(raw)
    assert raised.value.field == "referral_code"


def test_configuration_defaults_and_exact_amounts() -> None:
    config = validate(ReferralConfig, {"referrer_points": 100, "min_purchase_amount": "20.50"})
    assert config.trigger == "first_purchase"
    assert config.min_purchase_amount == Decimal("20.50")
    assert config.cap is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"referrer_points": 0, "referred_points": 0}, None),
        ({"trigger": "enrolment", "referrer_points": 1, "min_purchase_amount": "5"}, None),
        ({"referrer_points": 1, "min_purchase_amount": "-1"}, "min_purchase_amount"),
        ({"referrer_points": 1, "min_purchase_amount": "1.00001"}, "min_purchase_amount"),
        ({"referrer_points": True}, "referrer_points"),
        ({"referrer_points": 1, "cap": {"max_referrals": 2, "period": "week"}}, "cap.period"),
    ],
)
def test_configuration_errors_name_the_field(raw: dict[str, Any], field: str | None) -> None:
    with pytest.raises(ValidationError) as raised:
        validate(ReferralConfig, raw)
    assert raised.value.field == field
