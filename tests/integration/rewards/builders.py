"""Builders for rewards tests: a funded member, a reward, tiers."""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from fideliza.ledger import service as ledger
from fideliza.members.models import Member
from fideliza.programs.models import Program
from fideliza.programs.service import settings_of
from fideliza.rewards import service as rewards
from fideliza.rewards.models import Reward
from fideliza.tiers.models import TierLevelRow


def fund(db: Session, *, program: Program, member: Member, points: int, now: datetime) -> None:
    """Gives the member `points` available points (a manual adjustment)."""
    ledger.adjust(
        db,
        program_id=program.id,
        settings=settings_of(program),
        timezone_name=program.timezone,
        member_id=member.id,
        points=points,
        issuer="test",
        reason="seed",
        now=now,
    )


def make_reward(db: Session, *, program: Program, now: datetime, **fields: Any) -> Reward:
    data: dict[str, Any] = {
        "code": f"r-{secrets.token_hex(4)}",
        "name": "Free coffee",
        "kind": "gift",
        "points_cost": 100,
    }
    data.update(fields)
    return rewards.create_reward(db, program=program, data=data, now=now)


def add_tiers(db: Session, *, program: Program, codes: tuple[str, ...]) -> None:
    for rank, code in enumerate(codes, start=1):
        db.add(
            TierLevelRow(
                program_id=program.id,
                code=code,
                name=code.title(),
                rank=rank,
                threshold=Decimal(rank * 100),
                multiplier=Decimal(1),
                benefits={},
            )
        )
    db.flush()
