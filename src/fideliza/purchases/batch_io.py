"""The reads and bulk updates of one ingest batch, as Core statements on the session's connection.

A batch reads and writes thousands of rows by id: ORM row objects, and IN lists of thousands of
parameters (on PostgreSQL a single array parameter instead, see `in_values`), would cost more
than the database work itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import Executable, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from fideliza.db import add_by_id, among, among_values, bulk_insert, in_values
from fideliza.members.models import Member, MemberMonth
from fideliza.purchases.models import Purchase
from fideliza.rules.models import RuleUsage as RuleUsageRow
from fideliza.rules.service import EVERYONE, TOTAL, UsageKeys
from fideliza.tiers.domain import TierBasis

CHUNK = 5000


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


# Built once per backend and shape (one value or many, see db.among) and run with their
# values as parameters: building a statement costs more CPU than running it for a small batch.


@cache
def _member_ids_query(dialect: str, single: bool) -> Executable:
    return select(Member.external_id, Member.id).where(
        Member.program_id == bindparam("program_id"), among(dialect, Member.external_id, single)
    )


@cache
def _member_rows_query(dialect: str, single: bool) -> Executable:
    return select(
        Member.id,
        Member.status,
        Member.attributes,
        Member.birthday,
        Member.first_purchase_at,
        Member.tier_code,
    ).where(among(dialect, Member.id, single))


@cache
def _recorded_query(dialect: str, single: bool) -> Executable:
    return select(
        Purchase.external_id,
        Purchase.id,
        Purchase.member_id,
        Purchase.points_earned,
        Purchase.earn_transaction_id,
        Purchase.content_hash,
    ).where(
        Purchase.program_id == bindparam("program_id"),
        among(dialect, Purchase.external_id, single),
    )


def member_ids_by_ref(db: Session, *, program_id: int, refs: Iterable[str]) -> dict[str, int]:
    """Member ids by the external ids a till or a file uses; unknown ids are absent."""
    connection = db.connection()
    dialect = connection.dialect.name
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(set(refs))):
        for external_id, member_id in connection.execute(
            _member_ids_query(dialect, len(chunk) == 1),
            {"program_id": program_id, "values": among_values(chunk)},
        ):
            found[external_id] = member_id
    return found


MemberRow = tuple[int, str, dict[str, Any] | None, date | None, datetime | None, str | None]


def member_rows(db: Session, *, member_ids: Sequence[int]) -> list[MemberRow]:
    """(id, status, attributes, birthday, first purchase, tier code) of each member."""
    connection = db.connection()
    if connection.dialect.name == "sqlite":
        return _member_rows_sqlite(connection, member_ids)
    rows: list[MemberRow] = []
    for chunk in _chunks(member_ids):
        rows.extend(
            connection.execute(
                _member_rows_query("postgresql", len(chunk) == 1), {"values": among_values(chunk)}
            ).all()
        )
    return rows


def _member_rows_sqlite(connection: Any, member_ids: Sequence[int]) -> list[MemberRow]:
    """member_rows straight from the driver, converting as the mapped types do (JSON text,
    ISO dates, UTC timestamps stored without their zone): several times faster per row."""
    raw = connection.connection.driver_connection
    rows: list[MemberRow] = []
    cursor = raw.cursor()
    try:
        for chunk in _chunks(member_ids):
            marks = ",".join("?" * len(chunk))
            cursor.execute(
                "SELECT id, status, attributes, birthday, first_purchase_at, tier_code "
                f"FROM members WHERE id IN ({marks})",
                tuple(chunk),
            )
            for member_id, status, attributes, birthday, first, tier_code in cursor:
                first_at = None if first is None else datetime.fromisoformat(first)
                rows.append(
                    (
                        member_id,
                        status,
                        None if attributes is None else json.loads(attributes),
                        None if birthday is None else date.fromisoformat(birthday),
                        None if first_at is None else first_at.replace(tzinfo=UTC),
                        tier_code,
                    )
                )
    finally:
        cursor.close()
    return rows


def month_values(
    db: Session, *, member_ids: Sequence[int], basis: TierBasis, since: date
) -> list[tuple[int, date, Decimal]]:
    """Each member's monthly activity on the ladder's basis from `since` on."""
    from fideliza.tiers import service as tiers

    column = tiers.basis_column(basis)
    connection = db.connection()
    found: list[tuple[int, date, Decimal]] = []
    for chunk in _chunks(member_ids):
        for member_id, month, value in connection.execute(
            select(MemberMonth.member_id, MemberMonth.month, column).where(
                in_values(db, MemberMonth.member_id, chunk), MemberMonth.month >= since
            )
        ):
            found.append((member_id, month, Decimal(str(value))))
    return found


def usage_counters(
    db: Session, *, rule_ids: Sequence[int], wanted: Iterable[tuple[int, UsageKeys]]
) -> dict[tuple[int, int, str], int]:
    """The counters rules.load_usage loads (members' day, month and total, and the budgets),
    by (rule, member, period), in one query per rule and chunk of members."""
    if not rule_ids:
        return {}
    member_ids: set[int] = {EVERYONE}
    periods: set[str] = {TOTAL}
    for member_id, keys in wanted:
        member_ids.add(member_id)
        periods.update((keys.day, keys.month))
    ordered = sorted(member_ids)
    wanted_periods = sorted(periods)
    connection = db.connection()
    found: dict[tuple[int, int, str], int] = {}
    for rule_id in rule_ids:
        for chunk in _chunks(ordered):
            for member_id, period, points in connection.execute(
                select(RuleUsageRow.member_id, RuleUsageRow.period, RuleUsageRow.points).where(
                    RuleUsageRow.rule_id == rule_id,
                    in_values(db, RuleUsageRow.member_id, chunk),
                    in_values(db, RuleUsageRow.period, wanted_periods),
                )
            ):
                found[(rule_id, member_id, period)] = points
    return found


PurchaseRow = tuple[str, int, int, int, int | None, str]


def recorded_purchases(
    db: Session, *, program_id: int, external_ids: Iterable[str]
) -> list[PurchaseRow]:
    """(external id, id, member, points, earn transaction, hash) of those already recorded."""
    connection = db.connection()
    dialect = connection.dialect.name
    rows: list[PurchaseRow] = []
    for chunk in _chunks(sorted(set(external_ids))):
        rows.extend(
            connection.execute(
                _recorded_query(dialect, len(chunk) == 1),
                {"program_id": program_id, "values": among_values(chunk)},
            ).all()
        )
    return rows


def add_to_balances(db: Session, moves: dict[int, int]) -> None:
    """Adds each move to its account's cached balance (accounts in id order)."""
    add_by_id(db, "accounts", "balance", moves)


def set_first_purchases(db: Session, firsts: dict[int, datetime]) -> None:
    """Records members' first purchase dates."""
    if not firsts:
        return
    ordered = sorted(firsts.items())
    connection = db.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(
            text(
                "UPDATE members SET first_purchase_at = firsts.at "
                "FROM unnest(CAST(:ids AS BIGINT[]), CAST(:ats AS TIMESTAMPTZ[])) "
                "AS firsts(id, at) WHERE members.id = firsts.id"
            ),
            {"ids": [m for m, _ in ordered], "ats": [at for _, at in ordered]},
        )
        return
    connection.execute(
        update(Member)
        .where(Member.id == bindparam("member"))
        .values(first_purchase_at=bindparam("first")),
        [{"member": m, "first": at} for m, at in ordered],
    )


def set_tiers(db: Session, changes: list[dict[str, Any]]) -> None:
    """Sets members' tiers: `member`, its new tier `code` and `since` when (grace reset)."""
    if not changes:
        return
    connection = db.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(
            text(
                "UPDATE members SET tier_code = changes.code, tier_since = changes.since, "
                "tier_grace_used = 0 FROM unnest(CAST(:ids AS BIGINT[]), "
                "CAST(:codes AS VARCHAR[]), CAST(:sinces AS TIMESTAMPTZ[])) "
                "AS changes(id, code, since) WHERE members.id = changes.id"
            ),
            {
                "ids": [c["member"] for c in changes],
                "codes": [c["code"] for c in changes],
                "sinces": [c["since"] for c in changes],
            },
        )
        return
    connection.execute(
        update(Member)
        .where(Member.id == bindparam("member"))
        .values(tier_code=bindparam("code"), tier_since=bindparam("since"), tier_grace_used=0),
        changes,
    )


def insert_rows(db: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Inserts rows (dicts of the same keys): COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    if db.get_bind().dialect.name == "postgresql":
        columns = tuple(rows[0])
        bulk_insert(db, table, columns, [tuple(row[c] for c in columns) for row in rows])
        return
    db.connection().execute(insert(table), rows)
