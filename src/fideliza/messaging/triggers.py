"""Trigger evaluation as set-based SQL: each trigger is one query that returns only the members
due a message, and the messages are inserted with `ON CONFLICT DO NOTHING` on their idempotency
key (member + trigger + period), so evaluating twice queues nothing twice.

No Python loop over the members: a million-member program costs a few scans, not a million
round trips (see bench/bench_messaging.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import ColumnElement, and_, column, func, inspect, or_, select, table, text
from sqlalchemy.orm import Session, aliased

from fideliza.db import UTCDateTime, sqlite_timestamp
from fideliza.ledger.domain import AccountKind, LotState
from fideliza.ledger.models import Account, Lot
from fideliza.members.models import Member
from fideliza.messaging.domain import Kind, MessageStatus, MessagingConfig
from fideliza.purchases.models import Purchase
from fideliza.tiers.models import TierHistory
from fideliza.tiers.models import TierLevelRow as TierLevel

# A tier change is announced if it happened this recently (covers a missed job run or two).
TIER_CHANGE_WINDOW = timedelta(days=7)

Due = tuple[int, str, dict[str, Any]]  # member id, idempotency key, the kind's context


def _postgres(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def _month_day(db: Session, value: Any) -> ColumnElement[str]:
    if _postgres(db):
        return func.to_char(value, "MM-DD")
    return func.strftime("%m-%d", value)


def welcome(db: Session, *, program_id: int, now: datetime, config: MessagingConfig) -> list[Due]:
    """Members enrolled in the last `welcome_days` (once each)."""
    if config.welcome_days == 0:
        return []
    since = now - timedelta(days=config.welcome_days)
    query = select(Member.id).where(
        Member.program_id == program_id,
        Member.status == "active",
        Member.enrolled_at > since,
        Member.enrolled_at <= now,
    )
    return [(member_id, f"welcome:{member_id}", {}) for member_id in db.scalars(query)]


def birthday(
    db: Session, *, program_id: int, now: datetime, zone: ZoneInfo, config: MessagingConfig
) -> list[Due]:
    """Members whose birthday is today in the program's time zone (29 February on the 28th in
    other years); once per member and year."""
    today = now.astimezone(zone).date()
    days = [today.strftime("%m-%d")]
    if today.month == 2 and today.day == 28 and not _leap(today.year):
        days.append("02-29")
    query = select(Member.id).where(
        Member.program_id == program_id,
        Member.status == "active",
        Member.birthday.is_not(None),
        _month_day(db, Member.birthday).in_(days),
    )
    return [
        (member_id, f"birthday:{member_id}:{today.year}", {}) for member_id in db.scalars(query)
    ]


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def tier_changes(
    db: Session, *, program_id: int, now: datetime, config: MessagingConfig
) -> dict[Kind, list[Due]]:
    """Tier changes of the last week from `tier_history`, split into ups and downs by rank;
    once per change."""
    source = aliased(TierLevel)
    target = aliased(TierLevel)
    query = (
        select(
            TierHistory.id,
            TierHistory.member_id,
            TierHistory.from_code,
            TierHistory.to_code,
            source.rank,
            target.rank,
            source.name,
            target.name,
        )
        .outerjoin(
            source, and_(source.program_id == program_id, source.code == TierHistory.from_code)
        )
        .outerjoin(
            target, and_(target.program_id == program_id, target.code == TierHistory.to_code)
        )
        .where(
            TierHistory.program_id == program_id,
            TierHistory.changed_at > now - TIER_CHANGE_WINDOW,
            TierHistory.changed_at <= now,
        )
    )
    found: dict[Kind, list[Due]] = {Kind.TIER_UP: [], Kind.TIER_DOWN: []}
    for row in db.execute(query):
        change_id, member_id, from_code, to_code, from_rank, to_rank, from_name, to_name = row
        if to_code is None:
            up = False
        elif from_code is None:
            up = True
        elif from_rank is None or to_rank is None or from_rank == to_rank:
            continue  # a level since deleted: no honest "up" or "down" to tell
        else:
            up = to_rank > from_rank
        kind = Kind.TIER_UP if up else Kind.TIER_DOWN
        context = {"tier": {"from": from_name or from_code, "to": to_name or to_code}}
        found[kind].append((member_id, f"{kind.value}:{change_id}", context))
    return found


def points_expiring(
    db: Session, *, program_id: int, now: datetime, zone: ZoneInfo, config: MessagingConfig
) -> list[Due]:
    """Members with available points expiring within `expiring_days`, from their lots; once per
    member and first expiry date."""
    horizon = now + timedelta(days=config.expiring_days)
    query = (
        select(Lot.member_id, func.sum(Lot.remaining), func.min(Lot.expires_at))
        .where(
            Lot.program_id == program_id,
            Lot.state == LotState.AVAILABLE,
            Lot.expires_at > now,
            Lot.expires_at <= horizon,
            Lot.remaining > 0,
        )
        .group_by(Lot.member_id)
    )
    due: list[Due] = []
    for member_id, points, first in db.execute(query):
        # min() loses the column type on SQLite: the raw text comes back.
        first_at = _as_datetime(first)
        expires_on = first_at.astimezone(zone).date().isoformat()
        due.append(
            (
                member_id,
                f"points_expiring:{member_id}:{expires_on}",
                {"points": int(points), "expires_on": expires_on},
            )
        )
    return due


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def win_back(
    db: Session, *, program_id: int, now: datetime, zone: ZoneInfo, config: MessagingConfig
) -> list[Due]:
    """Members whose last purchase is older than `win_back_days` (but within the window after
    it, so a lapse is found once): once per member and last purchase."""
    cutoff = now - timedelta(days=config.win_back_days)
    earliest = cutoff - timedelta(days=config.win_back_window_days)
    last = func.max(Purchase.occurred_at)
    query = (
        select(Purchase.member_id, last)
        .where(Purchase.program_id == program_id, Purchase.occurred_at >= earliest)
        .group_by(Purchase.member_id)
        .having(last < cutoff)
    )
    lapsed = [(member_id, _as_datetime(last_at)) for member_id, last_at in db.execute(query)]
    if config.win_back_p_alive_percent:
        known = {member_id for member_id, _ in lapsed}
        lapsed += [
            (member_id, last_at)
            for member_id, last_at in probably_gone(
                db, program_id=program_id, now=now, below=config.win_back_p_alive_percent / 100
            )
            if member_id not in known
        ]
    due: list[Due] = []
    for member_id, last_at in lapsed:
        last_on = last_at.astimezone(zone).date()
        days_since = (now.astimezone(zone).date() - last_on).days
        # One key per member and lapse, whichever rule found it: one message, not two.
        due.append(
            (
                member_id,
                f"win_back:{member_id}:{last_on.isoformat()}",
                {"last_purchase_on": last_on.isoformat(), "days_since": days_since},
            )
        )
    return due


# A BG/NBD fit needs some repeat buyers to say anything; below this, nobody is flagged.
MIN_REPEAT_BUYERS = 30


def probably_gone(
    db: Session, *, program_id: int, now: datetime, below: float
) -> list[tuple[int, datetime]]:
    """Repeat buyers whose probability of still being a customer (BG/NBD, fitted now on the
    program's purchase history, in weeks) is below `below`; with their last purchase.

    Purchases are counted, not purchase days (a second visit on the same day counts): one
    grouped scan of the purchases, then a vectorized fit, for any number of members.
    """
    from fideliza.analytics.models import fit_bgnbd

    rows = db.execute(
        select(
            Purchase.member_id,
            func.count(),
            func.min(Purchase.occurred_at),
            func.max(Purchase.occurred_at),
        )
        .where(Purchase.program_id == program_id, Purchase.occurred_at <= now)
        .group_by(Purchase.member_id)
    ).all()
    if sum(1 for _, count, _, _ in rows if count > 1) < MIN_REPEAT_BUYERS:
        return []
    week = 7 * 86_400.0
    ids = [member_id for member_id, _, _, _ in rows]
    firsts = [_as_datetime(first) for _, _, first, _ in rows]
    lasts = [_as_datetime(last) for _, _, _, last in rows]
    frequency = np.array([count - 1 for _, count, _, _ in rows], dtype=np.float64)
    recency = np.array([(b - a).total_seconds() / week for a, b in zip(firsts, lasts, strict=True)])
    age = np.array([(now - a).total_seconds() / week for a in firsts])
    model = fit_bgnbd(frequency, recency, age)
    alive = model.probability_alive(frequency, recency, age)
    return [(ids[i], lasts[i]) for i in np.flatnonzero((frequency > 0) & (alive < below)).tolist()]


_REWARDS = table(
    "rewards",
    column("id"),
    column("program_id"),
    column("code"),
    column("name"),
    column("points_cost"),
    column("active"),
    column("stock"),
    column("available_from", UTCDateTime()),
    column("available_until", UTCDateTime()),
)


def reward_within_reach(
    db: Session, *, program_id: int, now: datetime, zone: ZoneInfo, config: MessagingConfig
) -> list[Due]:
    """Members within `reward_gap_points` below the program's cheapest available reward; once
    per member, reward and month. Nothing when the rewards catalog is not installed."""
    if not inspect(db.connection()).has_table("rewards"):
        return []
    r = _REWARDS.c
    cheapest = db.execute(
        select(r.id, r.code, r.name, r.points_cost)
        .where(
            r.program_id == program_id,
            r.active.is_(True),
            or_(r.stock.is_(None), r.stock > 0),
            or_(r.available_from.is_(None), r.available_from <= now),
            or_(r.available_until.is_(None), r.available_until > now),
        )
        .order_by(r.points_cost, r.id)
        .limit(1)
    ).first()
    if cheapest is None:
        return []
    reward_id, code, name, cost = cheapest
    query = select(Account.member_id, Account.balance).where(
        Account.program_id == program_id,
        Account.kind == AccountKind.AVAILABLE,
        Account.balance >= max(cost - config.reward_gap_points, 1),
        Account.balance < cost,
    )
    month = now.astimezone(zone).strftime("%Y-%m")
    reward = {"code": code, "name": name, "points_cost": int(cost)}
    return [
        (
            member_id,
            f"reward_within_reach:{member_id}:{reward_id}:{month}",
            {"reward": reward, "balance": int(balance), "points_missing": int(cost - balance)},
        )
        for member_id, balance in db.execute(query)
        if member_id is not None and balance is not None
    ]


_STAGING = "message_staging"
_INSERT_STAGED = f"""
INSERT INTO messages (program_id, member_id, kind, channel, idempotency_key, context,
                      transactional, status, attempts, next_attempt_at, created_at)
SELECT :program_id, member_id, :kind, :channel, idempotency_key, {{context}},
       :transactional, :status, 0, :now, :now
FROM {_STAGING} WHERE true
ORDER BY idempotency_key
ON CONFLICT (program_id, idempotency_key) DO NOTHING
"""


def queue(
    db: Session,
    *,
    program_id: int,
    kind: Kind,
    due: Iterable[Due],
    now: datetime,
    channel: str,
    transactional: bool = False,
) -> int:
    """Inserts the due messages, skipping keys already queued; returns how many are new.

    The due rows go to a temporary staging table in bulk (executemany on SQLite, COPY on
    PostgreSQL), then one `INSERT … SELECT … ON CONFLICT DO NOTHING` queues the new ones: no
    per-row ORM work, and an evaluation that finds nothing new costs one index probe per row.
    Keys are inserted in order, so two evaluations at once wait for each other, never deadlock.
    """
    rows = [
        (member_id, key, json.dumps(context, separators=(",", ":"), ensure_ascii=False))
        for member_id, key, context in due
    ]
    if not rows:
        return 0
    connection = db.connection()
    postgres = connection.dialect.name == "postgresql"
    raw = connection.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} "
            "(member_id BIGINT NOT NULL, idempotency_key VARCHAR(200) NOT NULL, context TEXT)"
        )
        cursor.execute(f"DELETE FROM {_STAGING}")
        if postgres:
            with cursor.copy(
                f"COPY {_STAGING} (member_id, idempotency_key, context) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(
                f"INSERT INTO {_STAGING} (member_id, idempotency_key, context) VALUES (?, ?, ?)",
                rows,
            )
    finally:
        cursor.close()
    statement = text(
        _INSERT_STAGED.format(context="CAST(context AS jsonb)" if postgres else "context")
    )
    result = connection.execute(
        statement,
        {
            "program_id": program_id,
            "kind": kind.value,
            "channel": channel,
            "transactional": transactional,
            "status": MessageStatus.PENDING.value,
            "now": now if postgres else sqlite_timestamp(now),
        },
    )
    connection.execute(text(f"DELETE FROM {_STAGING}"))
    return int(result.rowcount)
