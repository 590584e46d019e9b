"""Coupon test data: a program with a member and a campaign, saying only what a test needs."""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from fideliza.coupons import service as coupons
from fideliza.coupons.domain import Basket, parse_basket
from fideliza.coupons.models import CouponCampaign
from fideliza.members.models import Member
from fideliza.programs.models import Program
from tests.factories import make_member, make_program

TEN_OFF = {"type": "fixed", "amount": "10.00"}


def campaign(db: Session, program: Program, now: datetime, **fields: Any) -> CouponCampaign:
    """A campaign of €10 off, single use, unless told otherwise."""
    data: dict[str, Any] = {
        "code": f"c-{secrets.token_hex(4)}",
        "name": "Ten off",
        "discount": TEN_OFF,
    }
    data.update(fields)
    return coupons.create_campaign(db, program_id=program.id, data=data, now=now)


def shop(db: Session, now: datetime) -> tuple[Program, Member]:
    program = make_program(db, now=now)
    return program, make_member(db, program=program, now=now)


def basket(amount: str = "50.00", items: list[dict[str, Any]] | None = None) -> Basket:
    return parse_basket(Decimal(amount), "EUR", items)
