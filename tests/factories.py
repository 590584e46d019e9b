"""Builders for test data, so tests say only what matters to them."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fideliza.members import service as members
from fideliza.members.models import Member
from fideliza.programs import service as programs
from fideliza.programs.models import Program


def make_program(db: Session, *, now: datetime, **overrides: Any) -> Program:
    """A program with a unique code (tests share one database per backend)."""
    fields: dict[str, Any] = {
        "code": f"p-{secrets.token_hex(5)}",
        "name": "Café Central",
        "currency": "EUR",
        "timezone": "Europe/Madrid",
        "settings": {},
    }
    fields.update(overrides)
    return programs.create(db, now=now, **fields)


def make_member(db: Session, *, program: Program, now: datetime, **profile: Any) -> Member:
    data: dict[str, Any] = {"external_id": f"m-{secrets.token_hex(5)}", "first_name": "Ana"}
    data.update(profile)
    member, _ = members.enrol(db, program=program, data=data, now=now)
    return member
