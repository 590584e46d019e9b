"""Case test data: a program with a member and a purchase, and cases saying only what matters."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fideliza.cases import service as cases
from fideliza.cases.models import Case
from fideliza.members.models import Member
from fideliza.programs.models import Program
from fideliza.purchases import service as purchases
from fideliza.purchases.models import Purchase
from fideliza.rules import service as rules
from tests.factories import make_member, make_program

ONE_PER_EURO = {
    "name": "1 pt per euro",
    "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
}


def shop(db: Session, now: datetime) -> tuple[Program, Member]:
    """A program earning 1 point per euro, and one member."""
    program = make_program(db, now=now)
    rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
    return program, make_member(db, program=program, now=now)


def buy(db: Session, program: Program, member: Member, at: datetime, amount: str = "20.00") -> int:
    """Records a purchase; returns its id."""
    external_id = f"T-{secrets.token_hex(6)}"
    purchases.record_purchase(
        db,
        program=program,
        data={
            "external_id": external_id,
            "member_id": member.external_id,
            "occurred_at": at.isoformat(),
            "amount": amount,
            "currency": "EUR",
            "items": [{"sku": "A", "quantity": 1, "unit_price": amount}],
        },
        now=at,
    )
    found = purchases.get_purchase(db, program_id=program.id, external_id=external_id)
    assert isinstance(found, Purchase)
    return found.id


def complaint(db: Session, program: Program, member: Member, now: datetime, **fields: Any) -> Case:
    """A medium complaint about service, opened by staff, unless told otherwise."""
    data: dict[str, Any] = {
        "category": "service",
        "channel": "phone",
        "severity": "medium",
        "subject": "Cold coffee, rude answer",
        "actor": "agent:lucia",
    }
    data.update(fields)
    return cases.open_case(db, program_id=program.id, member_id=member.id, now=now, **data)
