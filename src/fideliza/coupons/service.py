"""Coupon use cases: campaigns, generating and issuing codes, validating, redeeming, restoring.

Every limit is enforced by one conditional statement (`UPDATE … WHERE uses < max_uses`,
`… WHERE spent + x <= budget`) and backed by a CHECK constraint, so concurrent tills on
PostgreSQL can never use a code more often, or spend a budget further, than allowed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fideliza.core import codes
from fideliza.core.errors import IdempotencyError, InvalidState, NotFound, ValidationError
from fideliza.core.hashing import content_hash
from fideliza.core.money import to_money
from fideliza.coupons import budget
from fideliza.coupons.domain import (
    Basket,
    CampaignInput,
    Discount,
    Reason,
    ReturnPolicy,
    Trigger,
    code_window,
    discount_for,
    parse_campaign,
    parse_discount,
    refusal,
)
from fideliza.coupons.errors import BudgetExhausted, CouponNotApplicable, CouponRejected
from fideliza.coupons.models import (
    CouponCampaign,
    CouponCode,
    CouponRedemption,
)
from fideliza.db import bulk_insert, sqlite_timestamp
from fideliza.members import service as members
from fideliza.programs import service as programs
from fideliza.purchases.models import Purchase

GENERATE_CHUNK = 100_000
MAX_GENERATE = 1_000_000  # per call: the codes are held in memory, ~100 MB per million


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    """A code issued to a member (or to nobody): `code` as people read it."""

    id: int
    code: str
    campaign_id: int
    member_id: int | None
    valid_until: datetime | None


@dataclass(frozen=True, slots=True)
class Quote:
    """What a valid code would take off a basket (nothing is consumed)."""

    code: str
    campaign_code: str
    discount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class Redeemed:
    """A redemption, attached to the purchase it discounted; `replayed` on a till's retry."""

    redemption_id: int
    code: str
    campaign_code: str
    discount: Decimal
    currency: str
    purchase_external_id: str | None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class CodeState:
    """The admin's view of a code: its exact state, never the generic answer a till gets."""

    code: str
    found: bool
    reason: Reason | None
    campaign_code: str | None = None
    member_id: int | None = None
    uses: int = 0
    max_uses: int | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    source: str | None = None
    redemptions: tuple[dict[str, Any], ...] = ()

    @property
    def state(self) -> str:
        return "usable" if self.reason is None else self.reason.value


# --- campaigns -------------------------------------------------------------------------------


def create_campaign(
    db: Session,
    *,
    program_id: int,
    data: Mapping[str, Any] | CampaignInput,
    now: datetime,
    actor: str | None = None,
) -> CouponCampaign:
    """Creates a coupon campaign (validated as a whole before anything is written)."""
    program = programs.get(db, program_id=program_id)
    spec = parse_campaign(data)
    prefix = codes.clean_prefix(spec.code_prefix, field="code_prefix")
    exists = select(CouponCampaign.id).where(
        CouponCampaign.program_id == program_id, CouponCampaign.code == spec.code
    )
    if db.scalar(exists) is not None:
        raise InvalidState(f"a campaign with code {spec.code!r} already exists", field="code")
    money_fields = {
        name: _money(getattr(spec, name), program.currency, name)
        for name in ("min_spend", "trigger_min_amount", "budget_money")
    }
    campaign = CouponCampaign(
        program_id=program_id,
        code=spec.code,
        name=spec.name.strip(),
        description=spec.description,
        discount=spec.discount.model_dump(mode="json"),
        max_uses_per_code=spec.max_uses_per_code,
        once_per_member=spec.once_per_member,
        valid_from=spec.valid_from,
        valid_until=spec.valid_until,
        code_valid_days=spec.code_valid_days,
        code_prefix=prefix,
        code_bits=spec.code_bits,
        trigger=spec.trigger.value,
        return_policy=spec.return_policy.value,
        budget_points=spec.budget_points,
        budget_period=spec.budget_period.value,
        points_per_code=spec.points_per_code,
        active=True,
        created_at=now,
        updated_at=now,
        **money_fields,
    )
    db.add(campaign)
    db.flush()
    programs.audit(
        db,
        program_id=program_id,
        action="fideliza.coupon_campaign.created",
        subject=spec.code,
        now=now,
        actor=actor,
        data={"campaign_id": campaign.id, "discount": campaign.discount},
    )
    return campaign


def _money(value: Decimal | None, currency: str, field: str) -> Decimal | None:
    return None if value is None else to_money(value, currency, field=field)


def get_campaign(db: Session, *, program_id: int, campaign_id: int) -> CouponCampaign:
    """Gets a campaign of the program by its id."""
    campaign = db.get(CouponCampaign, campaign_id)
    if campaign is None or campaign.program_id != program_id:
        raise NotFound(f"coupon campaign {campaign_id} does not exist", field="campaign_id")
    return campaign


def get_campaign_by_code(db: Session, *, program_id: int, code: str) -> CouponCampaign:
    """Gets a campaign of the program by its code."""
    campaign = db.scalar(
        select(CouponCampaign).where(
            CouponCampaign.program_id == program_id, CouponCampaign.code == code
        )
    )
    if campaign is None:
        raise NotFound(f"coupon campaign {code!r} does not exist", field="campaign")
    return campaign


def list_campaigns(db: Session, *, program_id: int) -> list[CouponCampaign]:
    """The program's campaigns, oldest first."""
    query = select(CouponCampaign).where(CouponCampaign.program_id == program_id)
    return list(db.scalars(query.order_by(CouponCampaign.id)))


def set_campaign_active(
    db: Session,
    *,
    program_id: int,
    campaign_id: int,
    active: bool,
    now: datetime,
    actor: str | None = None,
) -> CouponCampaign:
    """Pauses or resumes a campaign: a paused campaign's codes are refused and none is issued."""
    campaign = get_campaign(db, program_id=program_id, campaign_id=campaign_id)
    campaign.active = active
    campaign.updated_at = now
    programs.audit(
        db,
        program_id=program_id,
        action="fideliza.coupon_campaign." + ("resumed" if active else "paused"),
        subject=campaign.code,
        now=now,
        actor=actor,
    )
    db.flush()
    return campaign


# --- issuing ---------------------------------------------------------------------------------


def generate_codes(
    db: Session,
    *,
    program_id: int,
    campaign_id: int,
    count: int,
    now: datetime,
    actor: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Generates and stores `count` unassigned codes; returns them normalized (see `display`)."""
    if not 1 <= count <= MAX_GENERATE:
        raise ValidationError(f"must be between 1 and {MAX_GENERATE:,}", field="count")
    campaign = _issuing_campaign(db, program_id=program_id, campaign_id=campaign_id, now=now)
    if campaign.trigger != Trigger.MANUAL:
        raise InvalidState("next-order campaigns issue codes on purchases only", field="campaign")
    budget.spend(db, campaign=campaign, now=now, points=campaign.points_per_code * count)
    valid_from, valid_until = code_window(
        issued_at=now,
        campaign_from=campaign.valid_from,
        campaign_until=campaign.valid_until,
        valid_days=campaign.code_valid_days,
    )
    # Sorted, so the unique index is filled in order (see codes.new_sorted_codes).
    found = codes.new_sorted_codes(count, bits=campaign.code_bits, prefix=campaign.code_prefix)
    constants = {
        "program_id": program_id,
        "campaign_id": campaign.id,
        "max_uses": campaign.max_uses_per_code,
        "uses": 0,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "source": "generated",
        "created_at": now,
    }
    for start in range(0, count, GENERATE_CHUNK):
        chunk = found[start : start + GENERATE_CHUNK]
        # A collision with a stored code (odds ~count × stored / 2^65) fails the unique index
        # and with it the whole unit of work: nothing is ever half-generated.
        _store_codes(db, chunk, constants)
        if on_progress is not None:
            on_progress(len(chunk))
    programs.audit(
        db,
        program_id=program_id,
        action="fideliza.coupon_codes.generated",
        subject=campaign.code,
        now=now,
        actor=actor,
        data={"campaign_id": campaign.id, "count": count},
    )
    return found


def _store_codes(db: Session, found: list[str], constants: dict[str, Any]) -> None:
    """Inserts codes that share every other column, in one statement per chunk.

    On SQLite the codes go in as one JSON array read by `json_each`: the rows are built in C,
    about three times faster than `executemany` binding nine values a row. PostgreSQL gets COPY.
    """
    if db.get_bind().dialect.name != "sqlite":
        names = ["code", *constants]
        rows = [(code, *constants.values()) for code in found]
        bulk_insert(db, CouponCode.__table__, names, rows)
        return
    shared = {
        name: sqlite_timestamp(value) if isinstance(value, datetime) else value
        for name, value in constants.items()
    }
    columns = ", ".join(shared)
    values = ", ".join(f":{name}" for name in shared)
    db.execute(
        text(
            f"INSERT INTO {CouponCode.__tablename__} (code, {columns}) "
            f"SELECT value, {values} FROM json_each(:codes)"
        ),
        {**shared, "codes": json.dumps(found)},
    )


def issue_code(
    db: Session,
    *,
    program_id: int,
    campaign_id: int,
    member_id: int | None,
    now: datetime,
    source: str,
    source_ref: str | None = None,
) -> IssuedCoupon:
    """Issues one code of a campaign to a member, within the campaign's validity and budget."""
    campaign = _issuing_campaign(db, program_id=program_id, campaign_id=campaign_id, now=now)
    return _issue(
        db, campaign=campaign, member_id=member_id, now=now, source=source, ref=source_ref
    )


def issue_for_purchase(
    db: Session,
    *,
    program_id: int,
    purchase_id: int,
    member_id: int,
    amount: Decimal,
    now: datetime,
) -> list[IssuedCoupon]:
    """Issues the next-order coupons a purchase qualifies for (once per purchase and campaign).

    A campaign whose budget is spent, or outside its validity, silently issues nothing: the
    purchase itself must never fail because a promotion ran out.
    """
    return issue_for_purchases(
        db, program_id=program_id, purchases=[(purchase_id, member_id, amount)], now=now
    )


def issue_for_purchases(
    db: Session,
    *,
    program_id: int,
    purchases: Sequence[tuple[int, int, Decimal]],
    now: datetime,
) -> list[IssuedCoupon]:
    """`issue_for_purchase` for (purchase id, member id, amount) triples, with the campaigns
    read once (most programs have none, and then that is the only statement)."""
    if not purchases:
        return []
    query = select(CouponCampaign).where(
        CouponCampaign.program_id == program_id,
        CouponCampaign.active.is_(True),
        CouponCampaign.trigger == Trigger.PURCHASE.value,
    )
    campaigns = [
        campaign
        for campaign in db.scalars(query.order_by(CouponCampaign.id))
        if not (campaign.valid_from is not None and now < campaign.valid_from)
        and _campaign_refusal(campaign, now) is None
    ]
    issued: list[IssuedCoupon] = []
    for purchase_id, member_id, amount in purchases:
        ref = f"purchase:{purchase_id}"
        for campaign in campaigns:
            if campaign.trigger_min_amount is not None and amount < campaign.trigger_min_amount:
                continue
            existing = db.scalar(
                select(CouponCode).where(
                    CouponCode.campaign_id == campaign.id, CouponCode.source_ref == ref
                )
            )
            if existing is not None:
                issued.append(_issued(existing, campaign))
                continue
            try:
                issued.append(
                    _issue(
                        db,
                        campaign=campaign,
                        member_id=member_id,
                        now=now,
                        source="purchase",
                        ref=ref,
                    )
                )
            except BudgetExhausted:
                continue
    return issued


def _issuing_campaign(
    db: Session, *, program_id: int, campaign_id: int, now: datetime
) -> CouponCampaign:
    campaign = get_campaign(db, program_id=program_id, campaign_id=campaign_id)
    reason = _campaign_refusal(campaign, now)
    if reason is not None:
        raise InvalidState(f"the campaign issues no codes: {reason.value}", field="campaign")
    return campaign


def _campaign_refusal(campaign: CouponCampaign, now: datetime) -> Reason | None:
    if not campaign.active:
        return Reason.CAMPAIGN_INACTIVE
    if campaign.valid_until is not None and now >= campaign.valid_until:
        return Reason.EXPIRED
    return None


def _issue(
    db: Session,
    *,
    campaign: CouponCampaign,
    member_id: int | None,
    now: datetime,
    source: str,
    ref: str | None,
) -> IssuedCoupon:
    if not (source or "").strip() or len(source) > 30:
        raise ValidationError("is required (at most 30 characters)", field="source")
    if member_id is not None:
        members.require_active(members.get(db, program_id=campaign.program_id, member_id=member_id))
    budget.spend(db, campaign=campaign, now=now, points=campaign.points_per_code)
    valid_from, valid_until = code_window(
        issued_at=now,
        campaign_from=campaign.valid_from,
        campaign_until=campaign.valid_until,
        valid_days=campaign.code_valid_days,
    )
    for _attempt in range(3):  # a collision is ~2^-65 per stored code; retrying is the cure
        code = codes.check(codes.new_code(bits=campaign.code_bits, prefix=campaign.code_prefix))
        row = CouponCode(
            program_id=campaign.program_id,
            campaign_id=campaign.id,
            code=code,
            member_id=member_id,
            max_uses=campaign.max_uses_per_code,
            uses=0,
            valid_from=valid_from,
            valid_until=valid_until,
            source=source.strip(),
            source_ref=ref,
            created_at=now,
        )
        try:
            with db.begin_nested():
                db.add(row)
        except IntegrityError:
            continue
        issued = _issued(row, campaign)
        programs.publish(
            db,
            program_id=campaign.program_id,
            event_type="coupon.issued",
            payload={
                "coupon_id": row.id,
                "campaign": campaign.code,
                "member_id": member_id,
                "code": issued.code,
                "valid_until": valid_until.isoformat() if valid_until else None,
                "source": row.source,
            },
            now=now,
        )
        return issued
    raise InvalidState("could not draw a unique code; try again", field="code")


def _issued(row: CouponCode, campaign: CouponCampaign) -> IssuedCoupon:
    return IssuedCoupon(
        id=row.id,
        code=display(row.code, campaign),
        campaign_id=campaign.id,
        member_id=row.member_id,
        valid_until=row.valid_until,
    )


def display(normalized: str, campaign: CouponCampaign) -> str:
    """A stored code as people read it (`PREFIX-ABCD-EFGH-…`)."""
    return codes.format_code(normalized, prefix_length=len(campaign.code_prefix))


# --- validating and redeeming ----------------------------------------------------------------


def _find(db: Session, *, program_id: int, normalized: str) -> CouponCode | None:
    return db.scalar(
        select(CouponCode).where(CouponCode.program_id == program_id, CouponCode.code == normalized)
    )


def _usable(
    db: Session,
    *,
    program_id: int,
    code: str,
    member_id: int | None,
    now: datetime,
) -> tuple[CouponCode, CouponCampaign]:
    """The code and its campaign if usable now by `member_id`; CouponRejected otherwise."""
    normalized = codes.check(code)  # a typo never reaches the database
    if member_id is not None:  # a member of this program (NotFound names member_id)
        members.get(db, program_id=program_id, member_id=member_id)
    row = _find(db, program_id=program_id, normalized=normalized)
    if row is None:
        raise CouponRejected(Reason.UNKNOWN)
    campaign = db.get(CouponCampaign, row.campaign_id)
    assert campaign is not None
    reason = _code_refusal(db, row=row, campaign=campaign, member_id=member_id, now=now)
    if reason is not None:
        raise CouponRejected(reason)
    return row, campaign


def _code_refusal(
    db: Session,
    *,
    row: CouponCode,
    campaign: CouponCampaign,
    member_id: int | None,
    now: datetime,
) -> Reason | None:
    reason = refusal(
        now=now,
        exists=True,
        campaign_active=campaign.active,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        uses=row.uses,
        max_uses=row.max_uses,
        voided=row.voided_at is not None,
        assigned_member_id=row.member_id,
        member_id=member_id,
    )
    if reason is None and campaign.once_per_member and member_id is not None:
        used = select(CouponRedemption.id).where(
            CouponRedemption.campaign_id == campaign.id,
            CouponRedemption.once_member_id == member_id,
        )
        if db.scalar(used) is not None:
            reason = Reason.ALREADY_USED_BY_MEMBER
    exhausted = reason is None and campaign.budget_money is not None
    if exhausted and budget.state(db, campaign=campaign, now=now).exhausted:
        reason = Reason.BUDGET_EXHAUSTED
    return reason


def _discount(campaign: CouponCampaign, basket: Basket) -> Discount:
    outcome = discount_for(parse_discount(campaign.discount), basket, min_spend=campaign.min_spend)
    if not outcome.applicable:
        problem = outcome.problem or "does not apply to this basket"
        raise CouponNotApplicable(problem, field="basket")
    return outcome


def _require_member_if_once(campaign: CouponCampaign, member_id: int | None) -> None:
    if campaign.once_per_member and member_id is None:
        raise ValidationError("is required: this coupon is once per member", field="member_id")


def validate(
    db: Session,
    *,
    program_id: int,
    code: str,
    basket: Basket,
    now: datetime,
    member_id: int | None = None,
) -> Quote:
    """Tells what a code would take off `basket`, without consuming it."""
    row, campaign = _usable(db, program_id=program_id, code=code, member_id=member_id, now=now)
    _require_member_if_once(campaign, member_id)
    outcome = _discount(campaign, basket)
    return Quote(display(row.code, campaign), campaign.code, outcome.amount, basket.currency)


def redeem(
    db: Session,
    *,
    program_id: int,
    code: str,
    basket: Basket,
    now: datetime,
    member_id: int | None = None,
    purchase_external_id: str | None = None,
) -> Redeemed:
    """Uses a code on a basket (attached to a purchase); the same code + purchase replays."""
    if purchase_external_id is not None and not purchase_external_id.strip():
        raise ValidationError("must not be blank", field="purchase_external_id")
    normalized = codes.check(code)
    digest = content_hash(
        {
            "member_id": member_id,
            "total": basket.total,
            "currency": basket.currency,
            "items": [[i.sku, i.quantity, i.unit_price] for i in basket.items],
        }
    )
    if purchase_external_id is not None:
        replay = _replay(db, program_id, normalized, purchase_external_id, digest)
        if replay is not None:
            return replay
    row, campaign = _usable(db, program_id=program_id, code=code, member_id=member_id, now=now)
    _require_member_if_once(campaign, member_id)
    outcome = _discount(campaign, basket)
    try:
        with db.begin_nested():  # a refusal below leaves nothing behind, even mid-transaction
            redemption = _consume(
                db,
                row=row,
                campaign=campaign,
                basket=basket,
                discount=outcome.amount,
                member_id=member_id,
                purchase_external_id=purchase_external_id,
                digest=digest,
                now=now,
            )
    except BudgetExhausted:
        raise CouponRejected(Reason.BUDGET_EXHAUSTED) from None
    except IntegrityError:
        # Another till won the race: the same member's "once", or the same purchase.
        raise CouponRejected(Reason.ALREADY_USED_BY_MEMBER) from None
    shown = display(row.code, campaign)
    programs.publish(
        db,
        program_id=program_id,
        event_type="coupon.redeemed",
        payload={
            "redemption_id": redemption.id,
            "coupon_id": row.id,
            "code": shown,
            "campaign": campaign.code,
            "member_id": member_id,
            "purchase": purchase_external_id,
            "discount": str(outcome.amount),
            "currency": basket.currency,
        },
        now=now,
    )
    return Redeemed(
        redemption.id,
        shown,
        campaign.code,
        outcome.amount,
        basket.currency,
        purchase_external_id,
    )


def _consume(
    db: Session,
    *,
    row: CouponCode,
    campaign: CouponCampaign,
    basket: Basket,
    discount: Decimal,
    member_id: int | None,
    purchase_external_id: str | None,
    digest: str,
    now: datetime,
) -> CouponRedemption:
    """Takes one use (one conditional UPDATE), the budget, and writes the redemption."""
    used = db.execute(
        update(CouponCode)
        .where(
            CouponCode.id == row.id,
            CouponCode.voided_at.is_(None),
            (CouponCode.max_uses.is_(None)) | (CouponCode.uses < CouponCode.max_uses),
        )
        .values(uses=CouponCode.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount == 0:  # type: ignore[attr-defined]
        raise CouponRejected(Reason.USED_UP)
    start = None
    if campaign.budget_money is not None:
        start = budget.spend(db, campaign=campaign, now=now, money=discount)
    redemption = CouponRedemption(
        program_id=row.program_id,
        campaign_id=campaign.id,
        code_id=row.id,
        member_id=member_id,
        once_member_id=member_id if campaign.once_per_member else None,
        purchase_external_id=purchase_external_id,
        content_hash=digest,
        basket_total=basket.total,
        discount_amount=discount,
        currency=basket.currency,
        budget_period_start=start,
        redeemed_at=now,
    )
    db.add(redemption)
    db.flush()
    db.expire(row)  # `uses` changed in the database, not on this object
    return redemption


def _replay(
    db: Session, program_id: int, normalized: str, purchase_external_id: str, digest: str
) -> Redeemed | None:
    found = db.execute(
        select(CouponRedemption, CouponCode, CouponCampaign)
        .join(CouponCode, CouponCode.id == CouponRedemption.code_id)
        .join(CouponCampaign, CouponCampaign.id == CouponRedemption.campaign_id)
        .where(
            CouponCode.program_id == program_id,
            CouponCode.code == normalized,
            CouponRedemption.purchase_external_id == purchase_external_id,
        )
    ).first()
    if found is None:
        return None
    redemption, row, campaign = found
    if redemption.content_hash != digest:
        raise IdempotencyError(
            f"this coupon was already redeemed on purchase {purchase_external_id!r} "
            "with another basket",
            field="purchase_external_id",
        )
    return Redeemed(
        redemption.id,
        display(row.code, campaign),
        campaign.code,
        redemption.discount_amount,
        redemption.currency,
        purchase_external_id,
        replayed=True,
    )


# --- returns ---------------------------------------------------------------------------------


def restore_for_return(db: Session, *, program_id: int, purchase_id: int, now: datetime) -> int:
    """Gives back the coupons used on a purchase, as each campaign's return policy says, and
    voids the unused next-order coupons the purchase no longer earns.

    Call after the return is recorded: `full_return` campaigns look at what is left of it.
    Returns how many coupons were restored.
    """
    purchase = db.get(Purchase, purchase_id)
    if purchase is None or purchase.program_id != program_id:
        raise NotFound(f"purchase {purchase_id} does not exist", field="purchase_id")
    _void_unearned(db, purchase=purchase, now=now)
    fully_returned = purchase.amount_returned >= purchase.amount
    standing = db.execute(
        select(CouponRedemption, CouponCampaign)
        .join(CouponCampaign, CouponCampaign.id == CouponRedemption.campaign_id)
        .where(
            CouponRedemption.program_id == program_id,
            CouponRedemption.purchase_external_id == purchase.external_id,
            CouponRedemption.restored_at.is_(None),
        )
        .order_by(CouponRedemption.code_id)  # lock order, like every writer of codes
    ).all()
    restored = 0
    for redemption, campaign in standing:
        policy = ReturnPolicy(campaign.return_policy)
        if policy is ReturnPolicy.KEEP or (
            policy is ReturnPolicy.FULL_RETURN and not fully_returned
        ):
            continue
        db.execute(
            update(CouponCode)
            .where(CouponCode.id == redemption.code_id, CouponCode.uses > 0)
            .values(uses=CouponCode.uses - 1)
            .execution_options(synchronize_session=False)
        )
        budget.refund(
            db,
            campaign=campaign,
            start=redemption.budget_period_start,
            money=redemption.discount_amount,
        )
        redemption.restored_at = now
        redemption.once_member_id = None
        restored += 1
        programs.publish(
            db,
            program_id=program_id,
            event_type="coupon.restored",
            payload={
                "redemption_id": redemption.id,
                "coupon_id": redemption.code_id,
                "campaign": campaign.code,
                "member_id": redemption.member_id,
                "purchase": purchase.external_id,
            },
            now=now,
        )
    db.flush()
    return restored


def _void_unearned(db: Session, *, purchase: Purchase, now: datetime) -> int:
    """Voids the unused next-order coupons of a purchase whose kept amount no longer reaches
    the campaign's threshold (all of them once it is fully returned); a used one stays used."""
    kept = purchase.amount - purchase.amount_returned
    issued = db.execute(
        select(CouponCode, CouponCampaign)
        .join(CouponCampaign, CouponCampaign.id == CouponCode.campaign_id)
        .where(
            CouponCode.program_id == purchase.program_id,
            CouponCode.source_ref == f"purchase:{purchase.id}",
            CouponCode.uses == 0,
            CouponCode.voided_at.is_(None),
        )
        .order_by(CouponCode.id)
    ).all()
    voided = 0
    for code, campaign in issued:
        threshold = campaign.trigger_min_amount
        if kept > 0 and (threshold is None or kept >= threshold):
            continue
        code.voided_at = now
        voided += 1
        programs.audit(
            db,
            program_id=purchase.program_id,
            action="fideliza.coupon_code.voided",
            subject=str(code.id),
            now=now,
            actor="return",
            data={"purchase": purchase.external_id, "reason": "purchase returned"},
        )
    return voided


# --- admin -----------------------------------------------------------------------------------


def inspect(db: Session, *, program_id: int, code: str, now: datetime) -> CodeState:
    """The exact state of a code, for the admin (a typo is still refused by its check)."""
    normalized = codes.check(code)
    row = _find(db, program_id=program_id, normalized=normalized)
    if row is None:
        return CodeState(code=normalized, found=False, reason=Reason.UNKNOWN)
    campaign = db.get(CouponCampaign, row.campaign_id)
    assert campaign is not None
    reason = _code_refusal(db, row=row, campaign=campaign, member_id=row.member_id, now=now)
    redemptions = db.scalars(
        select(CouponRedemption)
        .where(CouponRedemption.code_id == row.id)
        .order_by(CouponRedemption.id)
    )
    return CodeState(
        code=display(row.code, campaign),
        found=True,
        reason=reason,
        campaign_code=campaign.code,
        member_id=row.member_id,
        uses=row.uses,
        max_uses=row.max_uses,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        source=row.source,
        redemptions=tuple(
            {
                "id": r.id,
                "member_id": r.member_id,
                "purchase": r.purchase_external_id,
                "discount": str(r.discount_amount),
                "redeemed_at": r.redeemed_at.isoformat(),
                "restored_at": r.restored_at.isoformat() if r.restored_at else None,
            }
            for r in redemptions
        ),
    )


def void_code(
    db: Session, *, program_id: int, code: str, now: datetime, actor: str | None = None
) -> CodeState:
    """Voids a code (leaked, issued by mistake): it is refused from now on."""
    normalized = codes.check(code)
    row = _find(db, program_id=program_id, normalized=normalized)
    if row is None:
        raise NotFound("no such coupon code", field="code")
    if row.voided_at is None:
        row.voided_at = now
        programs.audit(
            db,
            program_id=program_id,
            action="fideliza.coupon_code.voided",
            subject=str(row.id),
            now=now,
            actor=actor,
        )
        db.flush()
    return inspect(db, program_id=program_id, code=code, now=now)
