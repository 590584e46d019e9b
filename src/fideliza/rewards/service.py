"""Rewards use cases: the catalog, a member's view of it, and two-phase redemptions.

A redemption holds the member's points (a ledger hold) and, in the same transaction, a unit of
stock and its share of the reward's budget; capture fulfils it, release or expiry gives all of
it back, exactly once. Locks are taken in one order everywhere — the member's points, then the
reward's stock row, then its budget row — so concurrent redemptions queue and never deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from fideliza.core.errors import (
    Conflict,
    IdempotencyError,
    InsufficientPoints,
    InvalidState,
    NotFound,
    ValidationError,
)
from fideliza.core.validation import validate
from fideliza.ledger import service as ledger
from fideliza.ledger.domain import AccountKind, HoldStatus
from fideliza.ledger.models import Hold
from fideliza.members import service as members
from fideliza.programs import service as programs
from fideliza.programs.models import Program
from fideliza.rewards import budget
from fideliza.rewards.domain import (
    Offer,
    Period,
    RedemptionStatus,
    Refusal,
    RewardKind,
    Terms,
    Usage,
    Verdict,
    judge,
    next_within_reach,
    period_key,
    period_window,
)
from fideliza.rewards.fulfilment import fulfil
from fideliza.rewards.models import Redemption, Reward, RewardBudgetSpend
from fideliza.rewards.schemas import (
    CatalogEntry,
    MemberCatalog,
    RedemptionRead,
    RewardCreate,
    RewardRead,
    RewardUpdate,
)
from fideliza.tiers.models import TierLevelRow

HOLD_PREFIX = "reward:"
MAX_REFERENCE = 90  # the hold's reference adds the prefix, within its 100 characters
_OPEN = (RedemptionStatus.HELD.value, RedemptionStatus.CAPTURED.value)


# --- the catalog ----------------------------------------------------------------------------


def create_reward(
    db: Session,
    *,
    program: Program,
    data: RewardCreate | dict[str, Any],
    now: datetime,
    actor: str | None = None,
) -> Reward:
    """Adds a reward to the program's catalog (codes are unique within a program)."""
    payload = validate(RewardCreate, data)
    _check_tiers(db, program_id=program.id, payload=payload)
    _check_window(payload.available_from, payload.available_until)
    taken = db.scalar(
        select(Reward.id).where(Reward.program_id == program.id, Reward.code == payload.code)
    )
    if taken is not None:
        raise Conflict(f"a reward with code {payload.code!r} already exists", field="code")
    reward = Reward(
        program_id=program.id,
        code=payload.code,
        name=payload.name.strip(),
        description=payload.description,
        kind=payload.kind.value,
        points_cost=payload.points_cost,
        tier_costs=dict(payload.tier_costs or {}),
        eligible_tiers=list(payload.eligible_tiers or []),
        stock=payload.stock,
        limit_per_member=payload.limit_per_member,
        limit_period=(payload.limit_period or Period.EVER).value,
        available_from=payload.available_from,
        available_until=payload.available_until,
        budget_points=payload.budget_points,
        budget_money=payload.budget_money,
        budget_period=(payload.budget_period or Period.EVER).value,
        value=payload.value,
        campaign_id=payload.campaign_id,
        attributes=dict(payload.attributes or {}),
        active=True if payload.active is None else payload.active,
        created_at=now,
        updated_at=now,
    )
    db.add(reward)
    db.flush()
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.reward.created",
        subject=reward.code,
        now=now,
        actor=actor,
        data={"reward_id": reward.id, "kind": reward.kind, "points_cost": reward.points_cost},
    )
    return reward


def update_reward(
    db: Session,
    *,
    program: Program,
    reward_id: int,
    data: RewardUpdate | dict[str, Any],
    now: datetime,
    actor: str | None = None,
) -> Reward:
    """Changes the fields given (validated together with the rest before anything is written)."""
    payload = validate(RewardUpdate, data)
    changes = payload.model_dump(exclude_unset=True)
    reward = _locked_reward(db, program_id=program.id, reward_id=reward_id)
    for name in ("name", "points_cost", "limit_period", "budget_period", "active"):
        if name in changes and changes[name] is None:
            raise ValidationError("must not be null", field=name)
    merged = validate(
        RewardCreate,
        {
            **{
                name: getattr(reward, name)
                for name in RewardCreate.model_fields
                if name not in ("kind", "limit_period", "budget_period")
            },
            "kind": reward.kind,
            "limit_period": reward.limit_period,
            "budget_period": reward.budget_period,
            **changes,
        },
    )
    _check_tiers(db, program_id=program.id, payload=merged)
    _check_window(merged.available_from, merged.available_until)
    if {"budget_points", "budget_money", "budget_period"} & changes.keys():
        budget.apply_limits(db, reward=reward, payload=merged)
    for name, value in changes.items():
        if isinstance(value, Period | RewardKind):
            value = value.value
        setattr(reward, name, value)
    reward.updated_at = now
    db.flush()
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.reward.updated",
        subject=reward.code,
        now=now,
        actor=actor,
        data={
            "reward_id": reward.id,
            "changes": payload.model_dump(mode="json", exclude_unset=True),
        },
    )
    return reward


def get_reward(db: Session, *, program_id: int, reward_id: int) -> Reward:
    """Gets a reward of the program by id."""
    reward = db.get(Reward, reward_id)
    if reward is None or reward.program_id != program_id:
        raise NotFound(f"reward {reward_id} does not exist", field="reward_id")
    return reward


def find_reward(db: Session, *, program_id: int, ref: str) -> Reward:
    """A reward by its code, or by its id given as digits (as a CLI user types it)."""
    reward = db.scalar(select(Reward).where(Reward.program_id == program_id, Reward.code == ref))
    if reward is None and ref.isdigit():
        return get_reward(db, program_id=program_id, reward_id=int(ref))
    if reward is None:
        raise NotFound(f"reward {ref!r} does not exist", field="reward")
    return reward


def list_rewards(db: Session, *, program_id: int, active_only: bool = False) -> list[Reward]:
    """The program's catalog, in code order."""
    statement = select(Reward).where(Reward.program_id == program_id)
    if active_only:
        statement = statement.where(Reward.active.is_(True))
    # Fresh values, not the session's copies: stock moves under other transactions.
    fresh = statement.order_by(Reward.code).execution_options(populate_existing=True)
    return list(db.scalars(fresh))


def terms_of(reward: Reward) -> Terms:
    """The pure view of a reward's rules."""
    return Terms(
        points_cost=reward.points_cost,
        active=reward.active,
        tier_costs=dict(reward.tier_costs),
        eligible_tiers=tuple(reward.eligible_tiers),
        stock=reward.stock,
        limit_per_member=reward.limit_per_member,
        limit_period=Period(reward.limit_period),
        available_from=reward.available_from,
        available_until=reward.available_until,
        budget_points=reward.budget_points,
        budget_money=reward.budget_money,
        budget_period=Period(reward.budget_period),
        value=reward.value,
    )


def reward_read(reward: Reward) -> RewardRead:
    return RewardRead.model_validate(reward, from_attributes=True)


# --- a member's catalog ---------------------------------------------------------------------


def member_catalog(
    db: Session, *, program: Program, member_id: int, now: datetime
) -> MemberCatalog:
    """Every active reward as the member sees it now: price, affordable, eligible (or why not),
    points missing; and the eligible reward they are closest to affording."""
    member = members.get(db, program_id=program.id, member_id=member_id)
    available = ledger.balance(db, member_id=member.id).available
    rewards = list_rewards(db, program_id=program.id, active_only=True)
    zone = ZoneInfo(program.timezone)
    taken = db.execute(
        select(Redemption.reward_id, Redemption.created_at).where(
            Redemption.member_id == member.id, Redemption.status.in_(_OPEN)
        )
    ).all()
    spends = {
        (row.reward_id, row.period_key): row
        for row in db.scalars(
            select(RewardBudgetSpend).where(
                RewardBudgetSpend.reward_id.in_([reward.id for reward in rewards])
            )
        )
    }
    entries: dict[int, CatalogEntry] = {}
    offers: list[Offer] = []
    for reward in rewards:
        terms = terms_of(reward)
        start, end = period_window(terms.limit_period, now, zone)
        count = sum(
            1
            for reward_id, at in taken
            if reward_id == reward.id
            and (start is None or at >= start)
            and (end is None or at < end)
        )
        spend = spends.get((reward.id, period_key(terms.budget_period, now, zone)))
        usage = Usage(
            member_redemptions=count,
            budget_points_spent=spend.points_spent if spend else 0,
            budget_money_spent=spend.money_spent if spend else Decimal(0),
        )
        verdict = judge(terms, tier_code=member.tier_code, now=now, usage=usage)
        offer = Offer(
            reward_id=reward.id,
            points_cost=terms.cost_for(member.tier_code),
            verdict=verdict,
            points_available=available,
        )
        offers.append(offer)
        entries[reward.id] = CatalogEntry(
            reward=reward_read(reward),
            points_cost=offer.points_cost,
            affordable=offer.affordable,
            points_missing=offer.points_missing,
            eligible=verdict.eligible,
            reason_code=verdict.refusal.value if verdict.refusal else None,
            reason=verdict.reason,
        )
    closest = next_within_reach(offers)
    return MemberCatalog(
        member_id=member.id,
        tier_code=member.tier_code,
        points_available=available,
        rewards=list(entries.values()),
        next_reward=entries[closest.reward_id] if closest else None,
    )


# --- redemptions ----------------------------------------------------------------------------


def redeem(
    db: Session,
    *,
    program: Program,
    member_id: int,
    reward_id: int,
    reference: str,
    now: datetime,
    attributes: dict[str, Any] | None = None,
    ttl: timedelta | None = None,
    actor: str | None = None,
) -> tuple[Redemption, bool]:
    """Holds the reward's points and a unit of its stock (and budget) for the member.

    Idempotent by `reference`: the same reference for the same member and reward returns the
    first redemption (created False); for another member or reward it is refused.
    """
    reference = _require_reference(reference)
    member = members.get(db, program_id=program.id, member_id=member_id)
    replay = _replay(db, program_id=program.id, reference=reference, reward_id=reward_id,
                     member_id=member.id)  # fmt: skip
    if replay is not None:
        return replay, False
    members.require_active(member)
    # Re-read, not the session's copy: a release elsewhere may have put stock back.
    reward = db.get(Reward, reward_id, populate_existing=True)
    if reward is None or reward.program_id != program.id:
        raise NotFound(f"reward {reward_id} does not exist", field="reward_id")
    terms = terms_of(reward)
    zone = ZoneInfo(program.timezone)
    # What needs no lock is refused first (inactive, outside its window, tier, no stock left).
    _refuse_unless(judge(terms, tier_code=member.tier_code, now=now, usage=Usage()))
    # Then the locks, in the one order every rewards use case takes them: the reward's stock
    # row, the member's points, the budget counter. The stock comes first so that the losers
    # of a race for the last unit are refused at once, holding no member's lock.
    stock_taken = _take_stock(db, reward=reward)
    accounts = ledger.lock_member_accounts(db, member_ids=[member.id])[member.id]
    # Under the member's lock: a retry with this reference may have committed meanwhile.
    replay = _replay(db, program_id=program.id, reference=reference, reward_id=reward_id,
                     member_id=member.id)  # fmt: skip
    if replay is not None:
        if stock_taken:
            _put_stock_back(db, reward_id=reward.id)
        return replay, False
    usage = _usage(db, reward=reward, terms=terms, member_id=member.id, now=now, zone=zone)
    _refuse_unless(
        judge(replace(terms, stock=None), tier_code=member.tier_code, now=now, usage=usage)
    )
    points = terms.cost_for(member.tier_code)
    available = accounts[AccountKind.AVAILABLE][1]  # read under the lock
    if available < points:
        raise InsufficientPoints(
            f"the reward costs {points} points; the member has {available} available "
            f"({points - available} missing)",
            field="points",
        )
    budget_key = budget.charge(db, reward=reward, terms=terms, points=points, now=now, zone=zone)
    hold_reference = HOLD_PREFIX + reference
    # A hold made through the points API with this reference must not be taken over.
    if db.scalar(
        select(Hold.id).where(Hold.program_id == program.id, Hold.reference == hold_reference)
    ):
        raise IdempotencyError("is already the reference of a points hold", field="reference")
    hold = ledger.hold(
        db,
        program_id=program.id,
        settings=programs.settings_of(program),
        member_id=member.id,
        points=points,
        reference=hold_reference,
        now=now,
        reason=f"reward {reward.code}",
        ttl=ttl,
    )
    redemption = Redemption(
        program_id=program.id,
        reward_id=reward.id,
        member_id=member.id,
        hold_id=hold.id,
        reference=reference,
        status=RedemptionStatus.HELD.value,
        points=points,
        value=reward.value,
        stock_taken=stock_taken,
        budget_period_key=budget_key,
        created_at=now,
        expires_at=hold.expires_at,
        attributes=dict(attributes or {}),
        fulfilment={},
    )
    db.add(redemption)
    db.flush()
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.reward.held",
        subject=reward.code,
        now=now,
        actor=actor,
        data={"redemption_id": redemption.id, "member_id": member.id, "points": points},
    )
    return redemption, True


def capture(
    db: Session, *, program: Program, redemption_id: int, now: datetime, actor: str | None = None
) -> Redemption:
    """Finalizes a held redemption: the points are spent, the reward is fulfilled, and
    `reward.redeemed` is published. A second capture, or one after expiry, is refused."""
    redemption = _locked_redemption(db, program_id=program.id, redemption_id=redemption_id)
    _require_held(redemption)
    if redemption.expires_at <= now:
        raise InvalidState(
            f"redemption {redemption.id} expired at {redemption.expires_at.isoformat()}",
            field="redemption_id",
        )
    hold = db.get(Hold, redemption.hold_id)
    assert hold is not None  # a foreign key
    if hold.status == HoldStatus.HELD:
        ledger.capture(db, program_id=program.id, hold_id=hold.id, now=now)
    elif hold.status != HoldStatus.CAPTURED:
        raise InvalidState(
            f"the points of redemption {redemption.id} were {hold.status}", field="redemption_id"
        )
    reward = get_reward(db, program_id=program.id, reward_id=redemption.reward_id)
    redemption.fulfilment = fulfil(db, reward=reward, redemption=redemption, now=now)
    redemption.status = RedemptionStatus.CAPTURED.value
    redemption.settled_at = now
    db.flush()
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.reward.redeemed",
        subject=reward.code,
        now=now,
        actor=actor,
        data={"redemption_id": redemption.id, "member_id": redemption.member_id},
    )
    programs.publish(
        db,
        program_id=program.id,
        event_type="reward.redeemed",
        payload=redemption_read(db, redemption, reward=reward).model_dump(mode="json"),
        now=now,
    )
    return redemption


def release(
    db: Session, *, program: Program, redemption_id: int, now: datetime, actor: str | None = None
) -> Redemption:
    """Cancels a held redemption: points, stock and budget go back. Releasing twice is refused."""
    redemption = _locked_redemption(
        db, program_id=program.id, redemption_id=redemption_id, with_stock=True
    )
    _require_held(redemption)
    _give_back(db, redemption=redemption, now=now, status=RedemptionStatus.RELEASED)
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.reward.released",
        subject=str(redemption.reward_id),
        now=now,
        actor=actor,
        data={"redemption_id": redemption.id, "member_id": redemption.member_id},
    )
    return redemption


def expire_due(db: Session, *, program_id: int, now: datetime) -> int:
    """Expires held redemptions past their TTL (and those whose points hold was already
    released, e.g. by `ledger.expire_holds`): stock, budget and points go back once.

    Keyed on each redemption's own state, re-read under the member's lock, so it may run
    before or after the ledger's hold expiry, or in two workers at once, without giving
    anything back twice. Returns how many redemptions expired.
    """
    due = db.execute(
        select(Redemption.id, Redemption.reward_id, Redemption.member_id, Redemption.stock_taken)
        .join(Hold, Hold.id == Redemption.hold_id)
        .where(
            Redemption.program_id == program_id,
            Redemption.status == RedemptionStatus.HELD.value,
            # A hold captured outside this domain is finished by `capture`, not expired.
            Hold.status != HoldStatus.CAPTURED.value,
            or_(
                Redemption.expires_at <= now,
                Hold.status.in_([HoldStatus.RELEASED.value, HoldStatus.EXPIRED.value]),
            ),
        )
        .order_by(Redemption.id)
    ).all()
    # All locks up front, in the one order (stock rows, then members): taken one redemption
    # at a time they could cross a till's redeem, which holds a stock row and waits for a member.
    _lock_rewards(db, reward_ids=[row.reward_id for row in due if row.stock_taken])
    ledger.lock_member_accounts(db, member_ids=[row.member_id for row in due])
    expired = 0
    for row in due:
        redemption = get_redemption(db, program_id=program_id, redemption_id=row.id)
        db.refresh(redemption)
        if redemption.status != RedemptionStatus.HELD:
            continue  # settled meanwhile by a till or another worker
        _give_back(db, redemption=redemption, now=now, status=RedemptionStatus.EXPIRED)
        expired += 1
    return expired


def get_redemption(db: Session, *, program_id: int, redemption_id: int) -> Redemption:
    """Gets a redemption of the program by id."""
    redemption = db.get(Redemption, redemption_id)
    if redemption is None or redemption.program_id != program_id:
        raise NotFound(f"redemption {redemption_id} does not exist", field="redemption_id")
    return redemption


def redemption_read(
    db: Session, redemption: Redemption, *, reward: Reward | None = None
) -> RedemptionRead:
    reward = reward or get_reward(
        db, program_id=redemption.program_id, reward_id=redemption.reward_id
    )
    return RedemptionRead(
        id=redemption.id,
        reward_id=reward.id,
        reward_code=reward.code,
        kind=reward.kind,
        member_id=redemption.member_id,
        reference=redemption.reference,
        status=redemption.status,
        points=redemption.points,
        value=redemption.value,
        hold_id=redemption.hold_id,
        created_at=redemption.created_at,
        expires_at=redemption.expires_at,
        settled_at=redemption.settled_at,
        attributes=redemption.attributes,
        fulfilment=redemption.fulfilment,
    )


# --- internals ------------------------------------------------------------------------------


def _require_reference(reference: str) -> str:
    if not isinstance(reference, str) or not reference.strip():
        raise ValidationError("is required (your id of this redemption)", field="reference")
    if len(reference) > MAX_REFERENCE:
        raise ValidationError(f"must be at most {MAX_REFERENCE} characters", field="reference")
    return reference


def _replay(
    db: Session, *, program_id: int, reference: str, reward_id: int, member_id: int
) -> Redemption | None:
    """The redemption made before with this reference, if any (refused if it was another's)."""
    existing = db.scalar(
        select(Redemption).where(
            Redemption.program_id == program_id, Redemption.reference == reference
        )
    )
    if existing is not None and (
        existing.member_id != member_id or existing.reward_id != reward_id
    ):
        raise IdempotencyError(
            "was already used for a redemption of another member or reward", field="reference"
        )
    return existing


def _refuse_unless(verdict: Verdict) -> None:
    if verdict.refusal is not None:
        raise InvalidState(
            verdict.reason or "not eligible", field="reward_id", code=verdict.refusal.value
        )


def _require_held(redemption: Redemption) -> None:
    if redemption.status != RedemptionStatus.HELD:
        raise InvalidState(
            f"redemption {redemption.id} is {redemption.status}, not held", field="redemption_id"
        )


def _locked_redemption(
    db: Session, *, program_id: int, redemption_id: int, with_stock: bool = False
) -> Redemption:
    """The redemption, re-read under its member's lock (another worker may have settled it).

    `with_stock` first locks the reward's stock row too (to give a unit back), keeping the
    order redeem takes them in: stock row, then member.
    """
    redemption = get_redemption(db, program_id=program_id, redemption_id=redemption_id)
    if with_stock and redemption.stock_taken:
        _lock_rewards(db, reward_ids=[redemption.reward_id])
    ledger.lock_member_accounts(db, member_ids=[redemption.member_id])
    db.refresh(redemption)
    return redemption


def _lock_rewards(db: Session, *, reward_ids: Iterable[int]) -> None:
    """Locks rewards' rows in id order (PostgreSQL; SQLite's writers hold the database)."""
    db.execute(
        select(Reward.id)
        .where(Reward.id.in_(sorted(set(reward_ids))))
        .order_by(Reward.id)
        .with_for_update()
    ).all()


def _locked_reward(db: Session, *, program_id: int, reward_id: int) -> Reward:
    reward = db.scalar(
        select(Reward)
        .where(Reward.id == reward_id, Reward.program_id == program_id)
        .with_for_update()
    )
    if reward is None:
        raise NotFound(f"reward {reward_id} does not exist", field="reward_id")
    return reward


def _usage(
    db: Session, *, reward: Reward, terms: Terms, member_id: int, now: datetime, zone: ZoneInfo
) -> Usage:
    """What counts against the reward's limits now (read only for the limits it has)."""
    count = 0
    if terms.limit_per_member is not None:
        statement = select(func.count()).where(
            Redemption.member_id == member_id,
            Redemption.reward_id == reward.id,
            Redemption.status.in_(_OPEN),
        )
        start, end = period_window(terms.limit_period, now, zone)
        if start is not None and end is not None:
            statement = statement.where(Redemption.created_at >= start, Redemption.created_at < end)
        count = db.scalar(statement) or 0
    spend = None
    if terms.budget_points is not None or terms.budget_money is not None:
        key = period_key(terms.budget_period, now, zone)
        spend = db.get(RewardBudgetSpend, (reward.id, key), populate_existing=True)
    return Usage(
        member_redemptions=count,
        budget_points_spent=spend.points_spent if spend else 0,
        budget_money_spent=spend.money_spent if spend else Decimal(0),
    )


def _take_stock(db: Session, *, reward: Reward) -> bool:
    """Takes one unit in one statement (the check and the write are one: no lost update)."""
    if reward.stock is None:
        return False
    taken = db.execute(
        update(Reward)
        .where(Reward.id == reward.id, Reward.stock >= 1)
        .values(stock=Reward.stock - 1)
        .execution_options(synchronize_session=False)
    )
    db.expire(reward, ["stock"])
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidState(
            "the reward is out of stock", field="reward_id", code=Refusal.OUT_OF_STOCK.value
        )
    return True


def _put_stock_back(db: Session, *, reward_id: int) -> None:
    """Returns one unit (unless the reward has become unlimited meanwhile)."""
    db.execute(
        update(Reward)
        .where(Reward.id == reward_id, Reward.stock.is_not(None))
        .values(stock=Reward.stock + 1)
        .execution_options(synchronize_session=False)
    )


def _give_back(
    db: Session, *, redemption: Redemption, now: datetime, status: RedemptionStatus
) -> None:
    """Returns the points (unless the ledger already did), the unit of stock and the budget."""
    hold = db.get(Hold, redemption.hold_id)
    assert hold is not None  # a foreign key
    db.refresh(hold)
    if hold.status == HoldStatus.HELD:
        ledger.release(
            db,
            program_id=redemption.program_id,
            hold_id=hold.id,
            now=now,
            expired=status is RedemptionStatus.EXPIRED,
        )
    elif hold.status == HoldStatus.CAPTURED:
        raise InvalidState(
            f"the points of redemption {redemption.id} were captured; capture it instead",
            field="redemption_id",
        )
    if redemption.stock_taken:
        _put_stock_back(db, reward_id=redemption.reward_id)
    budget.refund(db, redemption=redemption)
    redemption.status = status.value
    redemption.settled_at = now
    db.flush()


def _check_window(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise ValidationError("must be after available_from", field="available_until")


def _check_tiers(db: Session, *, program_id: int, payload: RewardCreate) -> None:
    """Tier codes in prices and eligibility must be the program's tiers."""
    wanted: Iterable[str] = {*(payload.tier_costs or {}), *(payload.eligible_tiers or [])}
    if not wanted:
        return
    known = set(db.scalars(select(TierLevelRow.code).where(TierLevelRow.program_id == program_id)))
    for code in payload.tier_costs or {}:
        if code not in known:
            raise ValidationError(f"unknown tier {code!r}", field=f"tier_costs.{code}")
    for index, code in enumerate(payload.eligible_tiers or []):
        if code not in known:
            raise ValidationError(f"unknown tier {code!r}", field=f"eligible_tiers[{index}]")
