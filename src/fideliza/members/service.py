"""Member use cases: enrol, look up, update the profile, change status, issue cards."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from fideliza.core.errors import IdempotencyError, InvalidState, NotFound, ValidationError
from fideliza.core.validation import validate
from fideliza.ledger import service as ledger
from fideliza.members.domain import (
    ALLOWED_STATUS_CHANGES,
    MemberStatus,
    is_card_number,
    new_card_number,
    normalize_card_number,
)
from fideliza.members.models import Card, Member
from fideliza.members.schemas import MemberCreate, MemberUpdate
from fideliza.programs import service as programs
from fideliza.programs.models import Program

_PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "birthday",
    "locale",
    "consent",
    "attributes",
)


# What `null` means for the profile fields that cannot be empty (the enrolment defaults).
_RESET_TO: dict[str, Any] = {"locale": "es", "consent": {}, "attributes": {}}


def _profile_of(member: Member) -> dict[str, Any]:
    return {name: getattr(member, name) for name in _PROFILE_FIELDS}


def enrol(
    db: Session, *, program: Program, data: MemberCreate | dict[str, Any], now: datetime
) -> tuple[Member, bool]:
    """Enrols a member, idempotent by external id; returns (member, created).

    The same external id with the same profile returns the member already enrolled; with a
    different profile it is refused, so a retry can never overwrite someone else's data.
    """
    payload = validate(MemberCreate, data)
    if payload.referral_code is not None:
        # Linking a referral has rules of its own (anti-abuse, caps): never drop a code silently.
        raise ValidationError(
            "enrol through fideliza.referrals.service.enrol_with_referral to use a referral code",
            field="referral_code",
        )
    profile = payload.model_dump(include=set(_PROFILE_FIELDS), exclude_none=True)
    existing = db.scalar(
        select(Member).where(
            Member.program_id == program.id, Member.external_id == payload.external_id
        )
    )
    if existing is not None:
        if {name: getattr(existing, name) for name in profile} != profile:
            raise IdempotencyError(
                f"member {payload.external_id!r} is already enrolled with a different profile",
                field="external_id",
            )
        return existing, False
    member = Member(
        program_id=program.id,
        external_id=payload.external_id,
        first_name=payload.first_name,
        last_name=payload.last_name,
        email=payload.email,
        phone=payload.phone,
        birthday=payload.birthday,
        locale=payload.locale or "es",
        consent=payload.consent or {},
        attributes=payload.attributes or {},
        status=MemberStatus.ACTIVE.value,
        tier_grace_used=0,
        enrolled_at=now,
    )
    db.add(member)
    db.flush()
    ledger.open_member_accounts(db, program_id=program.id, member_ids=[member.id])
    issue_card(db, program=program, member=member, now=now)
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.member.enrolled",
        subject=member.external_id,
        now=now,
    )
    programs.publish(
        db,
        program_id=program.id,
        event_type="member.enrolled",
        payload={"member_id": member.id, "external_id": member.external_id},
        now=now,
    )
    return member, True


def issue_card(
    db: Session, *, program: Program, member: Member, now: datetime, number: str | None = None
) -> Card:
    """Issues a new card; the member's previous active cards are marked replaced."""
    for old in db.scalars(select(Card).where(Card.member_id == member.id, Card.status == "active")):
        old.status = "replaced"
    for _ in range(10):  # 10^14 numbers: a collision is rare, ten in a row never happens
        candidate = number or new_card_number()
        taken = db.scalar(
            select(Card.id).where(Card.program_id == program.id, Card.number == candidate)
        )
        if taken is None:
            card = Card(
                program_id=program.id,
                member_id=member.id,
                number=candidate,
                status="active",
                issued_at=now,
            )
            db.add(card)
            db.flush()
            return card
        if number is not None:
            raise ValidationError("is already used by another card", field="number")
    raise RuntimeError("could not find a free card number")


def get(db: Session, *, program_id: int, member_id: int) -> Member:
    """Gets a member by id, within a program (the same error whether absent or elsewhere)."""
    member = db.get(Member, member_id)
    if member is None or member.program_id != program_id:
        raise NotFound(f"member {member_id} does not exist", field="member_id")
    return member


def find(
    db: Session,
    *,
    program_id: int,
    external_id: str | None = None,
    card: str | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> Member:
    """Looks a member up by exactly one of: external id, card number, e-mail, phone."""
    given = {
        k: v
        for k, v in {
            "external_id": external_id,
            "card": card,
            "email": email,
            "phone": phone,
        }.items()
        if v
    }
    if len(given) != 1:
        raise ValidationError("give exactly one of external_id, card, email, phone", field="lookup")
    ((key, value),) = given.items()
    statement = select(Member).where(Member.program_id == program_id)
    if key == "card":
        number = normalize_card_number(value)
        if not is_card_number(number):
            raise ValidationError(
                "is not a valid card number (16 digits, Luhn check)", field="card"
            )
        statement = statement.join(Card, Card.member_id == Member.id).where(
            Card.number == number, Card.status == "active"
        )
    elif key == "email":
        statement = statement.where(Member.email == value.strip().lower())
    elif key == "phone":
        statement = statement.where(
            Member.phone == "".join(ch for ch in value if ch not in " ().-")
        )
    else:
        statement = statement.where(Member.external_id == value)
    found = db.scalars(statement.limit(2)).all()
    if not found:
        raise NotFound(f"no member with {key} {value!r}", field=key)
    if len(found) > 1:
        raise ValidationError(f"{len(found)}+ members share this {key}; use another key", field=key)
    return found[0]


def ids_by_external_id(
    db: Session, *, program_id: int, external_ids: Iterable[str]
) -> dict[str, int]:
    """Maps external ids to member ids (for bulk ingest); unknown ids are simply absent."""
    wanted = list(set(external_ids))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        rows = db.execute(
            select(Member.external_id, Member.id).where(
                Member.program_id == program_id, Member.external_id.in_(chunk)
            )
        ).all()
        found.update({external_id: member_id for external_id, member_id in rows})
    return found


def update_profile(
    db: Session,
    *,
    program: Program,
    member: Member,
    changes: MemberUpdate | dict[str, Any],
    now: datetime,
    actor: str | None = None,
) -> Member:
    """Changes profile fields only (points, tier, status and program are not profile fields)."""
    payload = validate(MemberUpdate, changes)
    updates = payload.model_dump(exclude_unset=True)
    for name, value in updates.items():
        if value is None and name in _RESET_TO:  # NOT NULL columns: null resets, as on enrol
            value = type(_RESET_TO[name])(_RESET_TO[name])
        setattr(member, name, value)
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.member.updated",
        subject=member.external_id,
        now=now,
        actor=actor,
        data={"fields": sorted(updates)},
    )
    db.flush()
    return member


def change_status(
    db: Session,
    *,
    program: Program,
    member: Member,
    status: str,
    reason: str,
    now: datetime,
    actor: str | None = None,
) -> Member:
    """Suspends, reactivates or closes a member (closing is final)."""
    try:
        target = MemberStatus(status)
    except ValueError:
        raise ValidationError(
            f"must be one of {[s.value for s in MemberStatus]}", field="status"
        ) from None
    current = MemberStatus(member.status)
    if target not in ALLOWED_STATUS_CHANGES[current]:
        raise InvalidState(f"a {current} member cannot become {target}", field="status")
    if not reason.strip():
        raise ValidationError("is required", field="reason")
    # Under the member's points lock, which every earning and spending takes first: a purchase
    # or redemption running now either finishes before the change or sees the new status.
    ledger.lock_member_accounts(db, member_ids=[member.id])
    member.status = target.value
    programs.audit(
        db,
        program_id=program.id,
        action=f"fideliza.member.{target.value}",
        subject=member.external_id,
        now=now,
        actor=actor,
        data={"reason": reason, "from": current.value},
    )
    db.flush()
    return member


def require_active(member: Member) -> None:
    """Refuses earning and spending for a suspended or closed member."""
    if member.status != MemberStatus.ACTIVE:
        raise InvalidState(f"member {member.external_id!r} is {member.status}", field="member_id")


def active_card(db: Session, *, member_id: int) -> Card | None:
    """The member's current card."""
    return db.scalar(select(Card).where(Card.member_id == member_id, Card.status == "active"))


def enrol_many(
    db: Session, *, program: Program, rows: Iterable[MemberCreate | dict[str, Any]], now: datetime
) -> int:
    """Enrols many members in bulk (imports, demo, benchmarks); known external ids are skipped.

    Each member gets the same accounts and card as with `enrol`; the audit trail records one
    row for the whole batch. Returns how many were enrolled.
    """
    from fideliza.purchases.ingest import allocate_ids

    payloads = [
        validate(MemberCreate, row, prefix=f"rows[{index}]") for index, row in enumerate(rows)
    ]
    known = ids_by_external_id(
        db, program_id=program.id, external_ids=[p.external_id for p in payloads]
    )
    fresh: dict[str, MemberCreate] = {}
    for payload in payloads:
        if payload.external_id not in known:
            fresh.setdefault(payload.external_id, payload)
    if not fresh:
        return 0
    ids = allocate_ids(db, "members", len(fresh))
    db.connection().execute(
        insert(Member),
        [
            {
                "id": member_id,
                "program_id": program.id,
                "external_id": p.external_id,
                "first_name": p.first_name,
                "last_name": p.last_name,
                "email": p.email,
                "phone": p.phone,
                "birthday": p.birthday,
                "locale": p.locale or "es",
                "consent": p.consent or {},
                "attributes": p.attributes or {},
                "status": MemberStatus.ACTIVE.value,
                "tier_grace_used": 0,
                "enrolled_at": now,
            }
            for member_id, p in zip(ids, fresh.values(), strict=True)
        ],
    )
    ledger.open_member_accounts(db, program_id=program.id, member_ids=ids)
    taken = set(db.scalars(select(Card.number).where(Card.program_id == program.id)))
    cards = []
    for member_id in ids:
        number = new_card_number()
        while number in taken:
            number = new_card_number()
        taken.add(number)
        cards.append(
            {
                "program_id": program.id,
                "member_id": member_id,
                "number": number,
                "status": "active",
                "issued_at": now,
            }
        )
    db.connection().execute(insert(Card), cards)
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.member.enrolled_in_bulk",
        subject=f"{len(ids)} members",
        now=now,
    )
    return len(ids)
