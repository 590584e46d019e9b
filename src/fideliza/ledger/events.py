"""Ledger events: what the outbox announces of points spent (webhooks deliver them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from fideliza.ledger.models import Hold

REDEEMED_EVENT = "points.redeemed"
# One-step redemptions (POST /v1/members/{id}/redemptions) keep their holds' references apart
# from the references clients give their own holds with this prefix; events leave it out.
REDEMPTION_PREFIX = "redemption:"


@dataclass(frozen=True, slots=True)
class Captured:
    """A captured hold, as `points.redeemed` announces it."""

    hold_id: int
    member_id: int
    points: int
    reference: str
    transaction_id: int | None  # the capture
    reason: str | None

    @classmethod
    def of(cls, found: Hold) -> Captured:
        return cls(
            hold_id=found.id,
            member_id=found.member_id,
            points=found.points,
            reference=found.reference,
            transaction_id=found.final_transaction_id,
            reason=found.reason,
        )

    def payload(self) -> dict[str, object]:
        """Whose points, how many, why, and where to trace them (the capture transaction, the
        hold). `reference` is the hold's without the one-step redemptions' prefix: the client's
        own reference, or `key:<digest>` for a redemption made with an Idempotency-Key alone."""
        return {
            "member_id": self.member_id,
            "points": self.points,
            "reference": self.reference.removeprefix(REDEMPTION_PREFIX),
            "transaction_id": self.transaction_id,
            "hold_id": self.hold_id,
            "reason": self.reason,
        }


def publish_redeemed(
    db: Session, *, program_id: int, captured: Sequence[Captured], now: datetime
) -> None:
    """Announces captured holds (`points.redeemed`, one event each) in the caller's transaction."""
    from fideliza.programs import service as programs  # programs imports the ledger

    programs.publish_many(
        db,
        program_id=program_id,
        events=[(REDEEMED_EVENT, each.payload()) for each in captured],
        now=now,
    )
