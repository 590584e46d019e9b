"""Periodic jobs: unlock pending points, release stale holds, expire lots, review tiers, and the
domains' own due work (referral payouts, lifecycle bonuses, survey invitations, …).

Each job is safe to run twice and by several workers at once: it works member by member under
the member's lock (PostgreSQL skips members another worker holds), and what it did is visible
in the database, so a second run finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from fideliza.apikeys import service as apikeys
from fideliza.cases import service as cases
from fideliza.db import unit_of_work
from fideliza.giftcards import service as giftcards
from fideliza.ledger import service as ledger
from fideliza.lifecycle import service as lifecycle
from fideliza.messaging import service as messaging
from fideliza.messaging.channels import ChannelSender, MessagingSettings
from fideliza.programs import service as programs
from fideliza.referrals import service as referrals
from fideliza.rewards import service as rewards
from fideliza.surveys import service as surveys
from fideliza.tiers import service as tiers
from fideliza.webhooks import expiring

# A step's result: a count, None (nothing was due at all), or counts by kind.
Counted = int | dict[str, int] | None
Step = Callable[[Session, int, datetime], Counted]


def _tier_review(db: Session, program_id: int, now: datetime) -> int | None:
    return tiers.review_closed_period(db, program=programs.get(db, program_id=program_id), now=now)


def _queue_messages(db: Session, program_id: int, now: datetime) -> dict[str, int] | None:
    """Personal messages due now, for programs that write to their members (None: not set up)."""
    if not messaging.is_set_up(db, program_id=program_id):
        return None
    return messaging.evaluate_triggers(db, program_id=program_id, now=now)


def _send_messages(factory: sessionmaker[Session], program_id: int, now: datetime) -> int | None:
    """Sends the queued messages; None without FIDELIZA_SECRET_KEY (unsubscribe links need it:
    the messages wait in the outbox)."""
    settings = MessagingSettings()
    if settings.secret_key is None:
        return None
    sender = ChannelSender(settings)
    try:
        report = messaging.dispatch_due(
            factory, now=now, sender=sender, settings=settings, program_id=program_id
        )
    finally:
        sender.close()
    return report.sent


# In this order, each in its own transaction. Unlocking comes before expiry (a lot that became
# available can then expire in the same run), and stale holds are released before expiry so
# their points expire with their lots. Bonuses and payouts come after expiry, so points earned
# today are not expired by today's run; idempotency keys past their retention go last.
STEPS: tuple[tuple[str, Step], ...] = (
    ("lots_unlocked", lambda db, p, now: ledger.unlock_due(db, program_id=p, now=now)),
    # A reward's redemption gives back its stock and budget with its points, so it goes first.
    ("redemptions_expired", lambda db, p, now: rewards.expire_due(db, program_id=p, now=now)),
    ("holds_released", lambda db, p, now: ledger.expire_holds(db, program_id=p, now=now)),
    ("points_expired", lambda db, p, now: ledger.expire_due(db, program_id=p, now=now)),
    # After expiry: what expired today is no longer announced as expiring.
    ("points_expiring", lambda db, p, now: expiring.announce_due(db, program_id=p, now=now)),
    ("tier_changes", _tier_review),
    ("gift_cards_expired", lambda db, p, now: giftcards.expire_due(db, program_id=p, now=now)),
    ("referrals_rewarded", lambda db, p, now: referrals.pay_due(db, program_id=p, now=now)),
    ("lifecycle_bonuses", lambda db, p, now: lifecycle.run_due(db, program_id=p, now=now)),
    ("survey_invitations", lambda db, p, now: surveys.invite_due(db, program_id=p, now=now)),
    ("case_breaches", lambda db, p, now: cases.flag_breaches(db, program_id=p, now=now)),
    ("messages_queued", _queue_messages),
    (
        "idempotency_keys_purged",
        lambda db, p, now: apikeys.purge_expired(db, now=now, program_id=p),
    ),
)


@dataclass(frozen=True, slots=True)
class JobReport:
    """What one run did, for one program: each step's count, by the step's name."""

    program: str
    counts: dict[str, Counted] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"program": self.program, **self.counts}


def run_jobs(factory: sessionmaker[Session], *, program_code: str, now: datetime) -> JobReport:
    """Runs every job for a program, each in its own transaction, in a safe order."""
    with unit_of_work(factory) as db:
        program_id = programs.get_by_code(db, code=program_code).id
    counts: dict[str, Counted] = {}
    for name, step in STEPS:
        with unit_of_work(factory) as db:
            counts[name] = step(db, program_id, now)
    counts["messages_sent"] = _send_messages(factory, program_id, now)
    return JobReport(program=program_code, counts=counts)
