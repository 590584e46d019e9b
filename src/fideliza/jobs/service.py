"""Periodic jobs: unlock pending points, release stale holds, expire lots, review tiers.

Each job is safe to run twice and by several workers at once: it works member by member under
the member's lock (PostgreSQL skips members another worker holds), and what it did is visible
in the ledger, so a second run finds nothing left to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from fideliza.apikeys import service as apikeys
from fideliza.db import unit_of_work
from fideliza.ledger import service as ledger
from fideliza.programs import service as programs
from fideliza.tiers import service as tiers


@dataclass(frozen=True, slots=True)
class JobReport:
    """What one run did, for one program."""

    program: str
    lots_unlocked: int
    holds_released: int
    points_expired: int
    tier_changes: int | None
    idempotency_keys_purged: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "program": self.program,
            "lots_unlocked": self.lots_unlocked,
            "holds_released": self.holds_released,
            "points_expired": self.points_expired,
            "tier_changes": self.tier_changes,
            "idempotency_keys_purged": self.idempotency_keys_purged,
        }


def run_jobs(factory: sessionmaker[Session], *, program_code: str, now: datetime) -> JobReport:
    """Runs every job for a program, each in its own transaction, in a safe order.

    Last, idempotency keys past their retention are forgotten.

    Unlocking comes before expiry (a lot that became available can then expire in the same
    run), and stale holds are released before expiry so their points expire with their lots.
    """
    with unit_of_work(factory) as db:
        program_id = programs.get_by_code(db, code=program_code).id
        unlocked = ledger.unlock_due(db, program_id=program_id, now=now)
    with unit_of_work(factory) as db:
        released = ledger.expire_holds(db, program_id=program_id, now=now)
    with unit_of_work(factory) as db:
        expired = ledger.expire_due(db, program_id=program_id, now=now)
    with unit_of_work(factory) as db:
        program = programs.get(db, program_id=program_id)
        changes = tiers.review_closed_period(db, program=program, now=now)
    with unit_of_work(factory) as db:
        purged = apikeys.purge_expired(db, now=now, program_id=program_id)
    return JobReport(
        program=program_code,
        lots_unlocked=unlocked,
        holds_released=released,
        points_expired=expired,
        tier_changes=changes,
        idempotency_keys_purged=purged,
    )
