"""The case models and migration 0009 describe the same tables, on both backends."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session, sessionmaker

import fideliza.cases.models
import fideliza.coupons.models
import fideliza.schema
from fideliza.db import Base

OURS = {"cases", "case_events", "case_slas"}


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or str(table.name) in OURS


def test_models_match_the_migration(session_factory: sessionmaker[Session]) -> None:
    assert fideliza.cases.models.Case.__tablename__ in Base.metadata.tables
    with session_factory() as db:
        context = MigrationContext.configure(
            db.connection(), opts={"include_object": _ours, "compare_type": True}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
