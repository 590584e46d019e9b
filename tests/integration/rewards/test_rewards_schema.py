"""The rewards migration creates exactly the tables the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from fideliza import schema
from fideliza.rewards import models as _rewards  # noqa: F401  (until schema.py imports it)

TABLES = {"rewards", "reward_budget_spend", "reward_redemptions"}


def test_the_migration_matches_the_models(db: Session) -> None:
    assert set(schema.metadata.tables) >= TABLES
    context = MigrationContext.configure(
        db.connection(), opts={"compare_type": True, "compare_server_default": False}
    )
    differences = [d for d in compare_metadata(context, schema.metadata) if _table_of(d) in TABLES]
    assert differences == []


def _table_of(difference: object) -> str | None:
    """The table a difference is about (Alembic reports tuples, or lists of them)."""
    item = difference[0] if isinstance(difference, list) else difference
    assert isinstance(item, tuple)
    for part in item[1:]:
        table = getattr(part, "table", None)
        name = getattr(table, "name", None) or getattr(part, "name", None)
        if isinstance(name, str) and name in TABLES:
            return name
        if isinstance(part, str) and part in TABLES:
            return part
    return None
