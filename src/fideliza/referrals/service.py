"""Referral use cases: configure, a member's code, enrol with a code, list, pay what is due.

Enrolment with a code refuses (and writes nothing) when the code is malformed or unknown, when
the new member is the referrer (same e-mail, phone or card), already a member, or when the link
would close a cycle: the till can then retry the enrolment without the code. A referrer over
the program's cap still gets the new member linked, as a referral `rejected` for that reason,
so the enrolment is never lost and the refusal is on record.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fideliza.core import codes
from fideliza.core.errors import Conflict, InvalidState, NotFound, ValidationError
from fideliza.core.validation import validate
from fideliza.db import Money
from fideliza.ledger import service as ledger
from fideliza.members import service as members
from fideliza.members.domain import MemberStatus
from fideliza.members.models import Card, Member
from fideliza.members.schemas import MemberCreate
from fideliza.programs import service as programs
from fideliza.programs.models import Program
from fideliza.purchases.models import Purchase
from fideliza.referrals.domain import (
    CODE_BITS,
    Identity,
    ReferralState,
    RejectReason,
    Trigger,
    closes_cycle,
    identity,
    period_start,
    require_code_text,
    shared_identifier,
)
from fideliza.referrals.models import Referral, ReferralCode, ReferralConfigRow
from fideliza.referrals.schemas import ReferralConfig

ISSUER = "fideliza.referrals"
CHUNK = 500


# --- configuration --------------------------------------------------------------------------


def configure(
    db: Session,
    *,
    program: Program,
    config: ReferralConfig | dict[str, Any],
    now: datetime,
    actor: str | None = None,
) -> ReferralConfig:
    """Sets the program's referral configuration (validated as a whole first)."""
    parsed = validate(ReferralConfig, config, prefix="config")
    stored = parsed.model_dump(mode="json")
    row = db.get(ReferralConfigRow, program.id)
    if row is None:
        db.add(ReferralConfigRow(program_id=program.id, config=stored, updated_at=now))
    else:
        row.config = stored
        row.updated_at = now
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.referral.configured",
        subject=program.code,
        now=now,
        actor=actor,
        data=stored,
    )
    db.flush()
    return parsed


def get_config(db: Session, *, program_id: int) -> ReferralConfig | None:
    """The program's referral configuration, or None when it has none."""
    row = db.get(ReferralConfigRow, program_id)
    return None if row is None else ReferralConfig.model_validate(row.config)


def _active_config(db: Session, *, program_id: int) -> ReferralConfig:
    config = get_config(db, program_id=program_id)
    if config is None or not config.active:
        raise InvalidState("this program runs no referral scheme", field="referral_code")
    return config


# --- codes ----------------------------------------------------------------------------------


def display(code: str) -> str:
    """A stored (normalized) code as people read it: groups of four."""
    return codes.format_code(code)


def code_for(db: Session, *, program: Program, member: Member, now: datetime) -> str:
    """The member's referral code (normalized), created the first time it is asked for."""
    if member.program_id != program.id:
        raise NotFound(f"member {member.id} does not exist", field="member_id")
    existing = db.scalar(select(ReferralCode.code).where(ReferralCode.member_id == member.id))
    if existing is not None:
        return existing
    for _ in range(5):  # 60 random bits: a collision is a freak; five in a row never happen
        code = codes.normalize(codes.new_code(bits=CODE_BITS, group=0))
        try:
            # A savepoint: a concurrent first ask for the same member (or a code collision)
            # fails alone, and the outer transaction carries on.
            with db.begin_nested():
                db.add(
                    ReferralCode(
                        program_id=program.id, member_id=member.id, code=code, created_at=now
                    )
                )
                db.flush()
            return code
        except IntegrityError:
            existing = db.scalar(
                select(ReferralCode.code).where(ReferralCode.member_id == member.id)
            )
            if existing is not None:
                return existing
    raise RuntimeError("could not find a free referral code")


def referrer_by_code(db: Session, *, program_id: int, referral_code: str) -> Member:
    """The member owning a referral code; a typo or an unknown code names `referral_code`."""
    raw = require_code_text(referral_code)
    try:
        normalized = codes.check(raw)
    except ValidationError:
        raise ValidationError(
            "is not a valid referral code (check the characters typed)", field="referral_code"
        ) from None
    member_id = db.scalar(
        select(ReferralCode.member_id).where(
            ReferralCode.program_id == program_id, ReferralCode.code == normalized
        )
    )
    if member_id is None:
        raise NotFound("no member has this referral code", field="referral_code")
    return members.get(db, program_id=program_id, member_id=member_id)


# --- enrolment ------------------------------------------------------------------------------


def _identity_of(db: Session, member: Member) -> Identity:
    cards = db.scalars(select(Card.number).where(Card.member_id == member.id))
    return identity(emails=[member.email], phones=[member.phone], cards=cards)


def _referrer_of(db: Session, member_id: int) -> int | None:
    return db.scalar(
        select(Referral.referrer_member_id).where(Referral.referred_member_id == member_id)
    )


def _over_cap(
    db: Session, *, program: Program, config: ReferralConfig, referrer_id: int, now: datetime
) -> bool:
    if config.cap is None:
        return False
    zone = ZoneInfo(program.timezone)
    start_day = period_start(config.cap.period, now.astimezone(zone).date())
    statement = select(func.count()).where(
        Referral.referrer_member_id == referrer_id,
        Referral.state != ReferralState.REJECTED.value,
    )
    if start_day is not None:
        start = datetime.combine(start_day, datetime.min.time(), tzinfo=zone)
        statement = statement.where(Referral.linked_at >= start)
    return (db.scalar(statement) or 0) >= config.cap.max_referrals


def enrol_with_referral(
    db: Session,
    *,
    program: Program,
    data: MemberCreate | dict[str, Any],
    referral_code: str | None = None,
    now: datetime,
) -> tuple[Member, Referral, bool]:
    """Enrols a new member linked to the owner of `referral_code`; returns (member, referral,
    created). A retry with the same external id and code returns the first result."""
    payload = validate(MemberCreate, data)
    if referral_code is not None and payload.referral_code not in (None, referral_code):
        raise ValidationError("differs from data.referral_code", field="referral_code")
    code_text = referral_code if referral_code is not None else payload.referral_code
    if code_text is None:
        raise ValidationError("is required", field="referral_code")
    # The code is this function's business: members.enrol gets the profile alone.
    profile = payload.model_copy(update={"referral_code": None})
    config = _active_config(db, program_id=program.id)
    referrer = referrer_by_code(db, program_id=program.id, referral_code=code_text)
    # Serializes the referrer's new referrals (the cap count) on PostgreSQL; SQLite
    # transactions already hold the write lock.
    db.execute(select(Member.id).where(Member.id == referrer.id).with_for_update())

    existing = db.scalar(
        select(Member).where(
            Member.program_id == program.id, Member.external_id == payload.external_id
        )
    )
    if existing is not None:
        link = db.scalar(select(Referral).where(Referral.referred_member_id == existing.id))
        if link is not None and link.referrer_member_id == referrer.id:
            members.enrol(db, program=program, data=profile, now=now)  # same profile or refused
            return existing, link, False
        raise Conflict(
            "is already a member: a referral code only links new members", field="external_id"
        )
    if referrer.status != MemberStatus.ACTIVE:
        raise InvalidState("belongs to a member who is not active", field="referral_code")
    _refuse_known_person(db, program=program, payload=payload, referrer=referrer)

    member, _ = members.enrol(db, program=program, data=profile, now=now)
    if closes_cycle(
        referrer_id=referrer.id,
        referred_id=member.id,
        referrer_of=lambda member_id: _referrer_of(db, member_id),
    ):  # a brand-new member refers nobody yet: this guards the invariant, never fires today
        raise ValidationError("would make a referral cycle", field="referral_code")
    referral = Referral(
        program_id=program.id,
        referrer_member_id=referrer.id,
        referred_member_id=member.id,
        state=ReferralState.PENDING.value,
        linked_at=now,
        referrer_points=0,
        referred_points=0,
    )
    if _over_cap(db, program=program, config=config, referrer_id=referrer.id, now=now):
        referral.state = ReferralState.REJECTED.value
        referral.reject_reason = RejectReason.REFERRER_CAP.value
    elif config.trigger is Trigger.ENROLMENT:
        _qualify(referral, at=now, window_days=programs.settings_of(program).return_window_days)
    db.add(referral)
    db.flush()
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.referral.linked",
        subject=member.external_id,
        now=now,
        data={"referrer": referrer.external_id, "state": referral.state},
    )
    return member, referral, True


def _refuse_known_person(
    db: Session, *, program: Program, payload: MemberCreate, referrer: Member
) -> None:
    """Refuses a self-referral (the referrer's e-mail, phone or card) or an existing customer."""
    newcomer = identity(emails=[payload.email], phones=[payload.phone], cards=[])
    shared = shared_identifier(newcomer, _identity_of(db, referrer))
    if shared is not None:
        raise ValidationError(
            f"cannot be used by its own member (same {shared})", field="referral_code"
        )
    for name, value in (("email", payload.email), ("phone", payload.phone)):
        if value is None:
            continue
        taken = db.scalar(
            select(Member.id)
            .where(Member.program_id == program.id, getattr(Member, name) == value)
            .limit(1)
        )
        if taken is not None:
            raise Conflict(
                "belongs to an existing member: a referral code only links new members",
                field=name,
            )


# --- reading --------------------------------------------------------------------------------


def get(db: Session, *, program_id: int, referral_id: int) -> Referral:
    """Gets a referral by id, within a program."""
    referral = db.get(Referral, referral_id)
    if referral is None or referral.program_id != program_id:
        raise NotFound(f"referral {referral_id} does not exist", field="referral_id")
    return referral


def list_referrals(
    db: Session,
    *,
    program_id: int,
    member_id: int | None = None,
    state: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[Referral]:
    """Referrals of a program, or those a member made or received (oldest first)."""
    statement = select(Referral).where(Referral.program_id == program_id, Referral.id > after_id)
    if member_id is not None:
        statement = statement.where(
            or_(
                Referral.referrer_member_id == member_id,
                Referral.referred_member_id == member_id,
            )
        )
    if state is not None:
        try:
            statement = statement.where(Referral.state == ReferralState(state).value)
        except ValueError:
            raise ValidationError(
                f"must be one of {[s.value for s in ReferralState]}", field="state"
            ) from None
    return list(db.scalars(statement.order_by(Referral.id).limit(limit)))


# --- qualifying and paying ------------------------------------------------------------------


def _qualify(referral: Referral, *, at: datetime, window_days: int) -> None:
    referral.state = ReferralState.QUALIFIED.value
    referral.qualified_at = at
    referral.due_at = at + timedelta(days=window_days)


def _unqualify(referral: Referral) -> None:
    referral.state = ReferralState.PENDING.value
    referral.qualified_at = referral.due_at = referral.purchase_id = None


def _net(purchase: Purchase) -> Decimal:
    return purchase.amount - purchase.amount_returned


def _qualifying_purchase(db: Session, *, member_id: int, min_amount: Decimal) -> Purchase | None:
    """The member's first purchase whose amount less returns is > 0 and ≥ `min_amount`."""
    statement = (
        select(Purchase)
        .where(
            Purchase.member_id == member_id,
            Purchase.amount - Purchase.amount_returned > literal(Decimal(0), Money()),
            Purchase.amount - Purchase.amount_returned >= literal(min_amount, Money()),
        )
        .order_by(Purchase.occurred_at, Purchase.id)
        .limit(1)
    )
    return db.scalar(statement)


def _locked_batch(
    db: Session, *, program_id: int, state: ReferralState, due_by: datetime | None, after_id: int
) -> list[Referral]:
    statement = select(Referral).where(
        Referral.program_id == program_id, Referral.state == state.value, Referral.id > after_id
    )
    if due_by is not None:
        statement = statement.where(Referral.due_at <= due_by)
    if state is ReferralState.PENDING:
        # Only referred members who bought at all: most pending referrals never will, and
        # they cost nothing this way.
        statement = statement.join(Member, Member.id == Referral.referred_member_id).where(
            Member.first_purchase_at.is_not(None)
        )
    # SKIP LOCKED: a second worker takes other referrals instead of waiting for these.
    statement = (
        statement.order_by(Referral.id).limit(CHUNK).with_for_update(skip_locked=True, of=Referral)
    )
    return list(db.scalars(statement))


def _qualify_pending(
    db: Session, *, program_id: int, config: ReferralConfig, window_days: int
) -> None:
    """Marks qualified the pending referrals whose referred member made a qualifying purchase."""
    after_id = 0
    while batch := _locked_batch(
        db, program_id=program_id, state=ReferralState.PENDING, due_by=None, after_id=after_id
    ):
        for referral in batch:
            purchase = _qualifying_purchase(
                db, member_id=referral.referred_member_id, min_amount=config.min_purchase_amount
            )
            if purchase is not None:
                _qualify(referral, at=purchase.occurred_at, window_days=window_days)
                referral.purchase_id = purchase.id
        after_id = batch[-1].id
        db.flush()


def pay_due(db: Session, *, program_id: int, now: datetime) -> int:
    """Pays the referrals whose trigger happened and whose return window has passed.

    A qualifying purchase returned (down to less than the minimum) before payout sends the
    referral back to pending, where a later purchase may qualify it. Exactly-once: each
    referral is paid under its row lock and moves to `rewarded` in the same transaction, and
    the ledger's unique idempotency keys (`referral:<id>:referrer|referred`) back that up.
    Returns how many referrals were rewarded.
    """
    config = get_config(db, program_id=program_id)
    if config is None:
        return 0
    program = programs.get(db, program_id=program_id)
    settings = programs.settings_of(program)
    if config.trigger is Trigger.FIRST_PURCHASE:
        _qualify_pending(
            db, program_id=program_id, config=config, window_days=settings.return_window_days
        )
    paid = 0
    after_id = 0
    while batch := _locked_batch(
        db, program_id=program_id, state=ReferralState.QUALIFIED, due_by=now, after_id=after_id
    ):
        # All the batch's members locked at once, in id order: paying referrer then referred
        # one by one could otherwise deadlock with a worker paying the reverse pair.
        ledger.lock_member_accounts(
            db,
            member_ids={m for r in batch for m in (r.referrer_member_id, r.referred_member_id)},
        )
        for referral in batch:
            paid += _pay_one(db, program=program, config=config, referral=referral, now=now)
        after_id = batch[-1].id
        db.flush()
    return paid


def _pay_one(
    db: Session, *, program: Program, config: ReferralConfig, referral: Referral, now: datetime
) -> int:
    if referral.purchase_id is not None:
        purchase = db.get(Purchase, referral.purchase_id)
        if purchase is None or _net(purchase) <= 0 or _net(purchase) < config.min_purchase_amount:
            _unqualify(referral)
            return 0
    people = {
        m.id: m
        for m in db.scalars(
            select(Member).where(
                Member.id.in_([referral.referrer_member_id, referral.referred_member_id])
            )
        )
    }
    statuses = {m.status for m in people.values()}
    if MemberStatus.CLOSED in statuses:
        referral.state = ReferralState.REJECTED.value
        referral.reject_reason = RejectReason.MEMBER_INACTIVE.value
        return 0
    if MemberStatus.SUSPENDED in statuses:
        return 0  # stays qualified: paid once the member is reactivated
    settings = programs.settings_of(program)
    referred = people[referral.referred_member_id]
    referrer = people[referral.referrer_member_id]
    for role, member, points in (
        ("referrer", referrer, config.referrer_points),
        ("referred", referred, config.referred_points),
    ):
        if points:
            ledger.adjust(
                db,
                program_id=program.id,
                settings=settings,
                timezone_name=program.timezone,
                member_id=member.id,
                points=points,
                issuer=ISSUER,
                reason=f"referral reward ({role}, referral {referral.id})",
                now=now,
                idempotency_key=f"referral:{referral.id}:{role}",
                source_type="referral",
                source_ref=f"referral:{referral.id}",
            )
    referral.state = ReferralState.REWARDED.value
    referral.rewarded_at = now
    referral.referrer_points = config.referrer_points
    referral.referred_points = config.referred_points
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.referral.rewarded",
        subject=referred.external_id,
        now=now,
        data={"referral_id": referral.id, "referrer": referrer.external_id},
    )
    programs.publish(
        db,
        program_id=program.id,
        event_type="referral.completed",
        payload={
            "referral_id": referral.id,
            "referrer_member_id": referrer.id,
            "referrer_external_id": referrer.external_id,
            "referred_member_id": referred.id,
            "referred_external_id": referred.external_id,
            "referrer_points": config.referrer_points,
            "referred_points": config.referred_points,
        },
        now=now,
    )
    return 1
