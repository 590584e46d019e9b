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
from fideliza.purchases.files import RowError, collector_paused, file_fingerprint, read_purchases
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
    # Bad rows of batches committed before a crash beyond the ones kept in the checkpoint.
    errors_not_listed: int = 0

    @property
    def error_count(self) -> int:
        """How many bad rows the file has (including batches done before a resume)."""
        return len(self.errors) + self.errors_not_listed


# The bad rows kept in the checkpoint, to report them again after a resume (the count is exact).
KEPT_ERRORS = 1000


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
        elif run.status == "done":
            # The same file again: read it all again; its purchases replay, its bad rows are
            # still listed (resuming after the last row would read nothing and report nothing).
            run.rows_done, run.status, run.detail = 0, "running", {"file": path.name}
            run.updated_at = now
        start = run.rows_done
        kept = [
            RowError(line, name, message) for line, name, message in run.detail.get("errors", [])
        ]
        not_listed = int(run.detail.get("error_count", 0)) - len(kept)
    report = ImportReport(resumed_from=start, errors=kept, errors_not_listed=not_listed)
    for batch in read_purchases(
        path, program_currency=currency, batch_size=batch_size, skip_rows=start
    ):
        batch_errors = list(batch.errors)
        rows_in_batch = batch.rows
        with unit_of_work(factory) as db, collector_paused():
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
                batch_errors.append(RowError(line=line, field=error.field, message=error.message))
            checkpoint = db.scalar(
                select(JobRun).where(JobRun.program_id == program_id, JobRun.source == source)
            )
            assert checkpoint is not None
            checkpoint.rows_done += rows_in_batch
            checkpoint.updated_at = now
            if batch_errors:  # committed with the batch, so a resume can report them again
                stored = list(checkpoint.detail.get("errors", []))
                room = max(0, KEPT_ERRORS - len(stored))
                stored += [[e.line, e.field, e.message] for e in batch_errors[:room]]
                total = int(checkpoint.detail.get("error_count", 0)) + len(batch_errors)
                checkpoint.detail = {**checkpoint.detail, "errors": stored, "error_count": total}
        report.errors.extend(batch_errors)
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
        checkpoint.detail = {**checkpoint.detail, "error_count": report.error_count}
    report.errors.sort(key=lambda e: e.line)
    return report
