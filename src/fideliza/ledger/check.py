"""`fideliza ledger check`: recomputes every balance from the entries, reports each difference."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One broken invariant: what, where, what the entries say and what was found."""

    check: str
    subject: str
    expected: int
    found: int

    def __str__(self) -> str:
        return f"{self.check}: {self.subject} expected {self.expected}, found {self.found}"


# Each query returns (subject, expected, found) rows for what is wrong, and nothing when all is
# well. They aggregate in the database, so the check runs in one pass over millions of rows.
_CHECKS: dict[str, str] = {
    "transaction entries sum to zero": """
        SELECT 'transaction ' || CAST(e.transaction_id AS VARCHAR(20)), 0, SUM(e.amount)
        FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
        WHERE {in_program_t}
        GROUP BY e.transaction_id HAVING SUM(e.amount) <> 0""",
    "cached balance equals the sum of entries": """
        SELECT a.code, COALESCE(s.total, 0), a.balance
        FROM accounts a
        LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM ledger_entries
                   GROUP BY account_id) s ON s.account_id = a.id
        WHERE a.balance IS NOT NULL AND {in_program_a}
          AND a.balance <> COALESCE(s.total, 0)""",
    "lot remaining equals amount minus allocations": """
        SELECT 'lot ' || CAST(l.id AS VARCHAR(20)), l.amount - COALESCE(s.taken, 0), l.remaining
        FROM point_lots l
        LEFT JOIN (SELECT lot_id, SUM(amount) AS taken FROM lot_allocations
                   GROUP BY lot_id) s ON s.lot_id = l.id
        WHERE {in_program_l}
          AND (l.remaining <> l.amount - COALESCE(s.taken, 0)
               OR l.remaining < 0 OR l.remaining > l.amount)""",
    "pending balance equals the pending lots": """
        SELECT a.code, COALESCE(s.left_, 0), a.balance
        FROM accounts a
        LEFT JOIN (SELECT member_id, SUM(remaining) AS left_ FROM point_lots
                   WHERE state = 'pending' GROUP BY member_id) s ON s.member_id = a.member_id
        WHERE a.kind = 'pending' AND {in_program_a}
          AND a.balance <> COALESCE(s.left_, 0)""",
    "available balance equals the open available lots": """
        SELECT a.code, CASE WHEN a.balance < 0 THEN 0 ELSE a.balance END, COALESCE(s.left_, 0)
        FROM accounts a
        LEFT JOIN (SELECT member_id, SUM(remaining) AS left_ FROM point_lots
                   WHERE state = 'available' GROUP BY member_id) s ON s.member_id = a.member_id
        WHERE a.kind = 'available' AND {in_program_a}
          AND COALESCE(s.left_, 0) <> CASE WHEN a.balance < 0 THEN 0 ELSE a.balance END""",
    "held balance equals the open holds": """
        SELECT a.code, COALESCE(s.points, 0), a.balance
        FROM accounts a
        LEFT JOIN (SELECT member_id, SUM(points) AS points FROM point_holds
                   WHERE status = 'held' GROUP BY member_id) s ON s.member_id = a.member_id
        WHERE a.kind = 'held' AND {in_program_a}
          AND a.balance <> COALESCE(s.points, 0)""",
    "expired lots have nothing left": """
        SELECT 'lot ' || CAST(id AS VARCHAR(20)), 0, remaining FROM point_lots
        WHERE state = 'expired' AND remaining <> 0
          AND {in_program_any}""",
}


def _in_program(alias: str) -> str:
    column = f"{alias}.program_id" if alias else "program_id"
    return f"(CAST(:program_id AS BIGINT) IS NULL OR {column} = CAST(:program_id AS BIGINT))"


_SCOPES = {f"in_program_{a or 'any'}": _in_program(a) for a in ("", "a", "t", "l")}


def check_ledger(
    db: Session, *, program_id: int | None = None, limit: int = 1000
) -> list[Discrepancy]:
    """Runs every invariant check; returns the differences found (empty when all is well)."""
    found: list[Discrepancy] = []
    for name, sql in _CHECKS.items():
        query = text(sql.format(**_SCOPES) + f" LIMIT {int(limit)}")
        rows = db.execute(query, {"program_id": program_id}).all()
        found.extend(
            Discrepancy(check=name, subject=str(s), expected=int(e), found=int(f))
            for s, e, f in rows
        )
    return found
