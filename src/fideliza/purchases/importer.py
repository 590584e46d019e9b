"""Bulk import of a purchases file: streaming, batch by batch, resumable after a crash.

Each batch commits together with the import's checkpoint (rows done), so after a crash the
next run starts after the last committed batch; and as purchases are idempotent by external
id, even a lost checkpoint could never count a purchase twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.db import unit_of_work
from fideliza.programs import service as programs
from fideliza.programs.models import JobRun
from fideliza.purchases.files import RowError, file_fingerprint, read_purchases
from fideliza.purchases.ingest import ingest_purchases


@dataclass(slots=True)
class ImportReport:
    """What an import did: rows read, purchases recorded, replays skipped, bad rows."""

    rows_read: int = 0
    recorded: int = 0
    replayed: int = 0
    points: int = 0
    resumed_from: int = 0
    errors: list[RowError] = field(default_factory=list)


def import_purchases(
    factory: sessionmaker[Session],
    *,
    program_code: str,
    path: Path,
    now: datetime,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Imports `path` (CSV or Parquet) into the program; bad rows are reported, good ones kept."""
    fingerprint = file_fingerprint(path)
    source = f"purchases:{fingerprint}"
    with unit_of_work(factory) as db:
        program = programs.get_by_code(db, code=program_code)
        program_id, currency = program.id, program.currency
        run = db.scalar(
            select(JobRun).where(JobRun.program_id == program_id, JobRun.source == source)
        )
        if run is None:
            run = JobRun(
                program_id=program_id,
                kind="import",
                source=source,
                rows_done=0,
                status="running",
                detail={"file": path.name},
                updated_at=now,
            )
            db.add(run)
        start = run.rows_done
    report = ImportReport(resumed_from=start)
    for batch in read_purchases(
        path, program_currency=currency, batch_size=batch_size, skip_rows=start
    ):
        report.errors.extend(batch.errors)
        rows_in_batch = batch.rows
        with unit_of_work(factory) as db:
            program = programs.get(db, program_id=program_id)
            result = ingest_purchases(
                db,
                program=program,
                purchases=[p for _, p in batch.purchases],
                now=now,
                collect_errors=True,
            )
            for position, error in result.errors:
                line = batch.purchases[position][0]
                report.errors.append(RowError(line=line, field=error.field, message=error.message))
            checkpoint = db.scalar(
                select(JobRun).where(JobRun.program_id == program_id, JobRun.source == source)
            )
            assert checkpoint is not None
            checkpoint.rows_done += rows_in_batch
            checkpoint.updated_at = now
        report.rows_read += rows_in_batch
        report.recorded += sum(1 for o in result.outcomes if not o.replayed)
        report.replayed += sum(1 for o in result.outcomes if o.replayed)
        report.points += sum(o.points for o in result.outcomes if not o.replayed)
        if progress is not None:
            progress(rows_in_batch)
    with unit_of_work(factory) as db:
        checkpoint = db.scalar(
            select(JobRun).where(JobRun.program_id == program_id, JobRun.source == source)
        )
        assert checkpoint is not None
        checkpoint.status = "done"
        checkpoint.detail = {**checkpoint.detail, "errors": len(report.errors)}
    report.errors.sort(key=lambda e: e.line)
    return report
