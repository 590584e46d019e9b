"""Prometheus metrics at `/metrics`, in the text exposition format (version 0.0.4).

- `fideliza_http_request_duration_seconds` (histogram) and `fideliza_http_requests_total`
  (counter), by route template, method and status class (`2xx`, `4xx`, …);
- `fideliza_ledger_transactions_total` (counter): points postings committed, by ledger
  transaction kind (earn, redeem, reserve, …), counted when their database transaction commits
  (a rolled back or replayed request counts nothing);
- `fideliza_outbox_lag_seconds` (gauge): age of the oldest undispatched outbox row, and
  `fideliza_outbox_pending` (gauge): how many there are; both read at scrape time.

The counters and the histogram are per process: with several workers, Prometheus scrapes each
worker (or sums them) — a scrape through a load balancer sees one worker's numbers.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Insert, event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from fideliza.api.errors import log
from fideliza.ledger.models import LedgerTransaction
from fideliza.programs.models import OutboxEvent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; finer at the low end, where the API's latency targets (p99 ≤ 25-30 ms) are.
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_PENDING_POSTINGS = "fideliza.metrics.postings"

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in labels)
    return f"{{{inner}}}" if inner else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Metrics:
    """The process's request, posting and outbox metrics (thread-safe)."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self._lock = threading.Lock()
        self._histograms: dict[Labels, list[int]] = {}  # cumulative counts are made at render
        self._sums: dict[Labels, float] = {}
        self._counts: dict[Labels, int] = {}
        self._postings: Counter[str] = Counter()

    def observe_request(self, *, route: str, method: str, status: int, seconds: float) -> None:
        labels: Labels = (
            ("method", method),
            ("route", route),
            ("status", f"{status // 100}xx"),
        )
        index = next((i for i, bound in enumerate(self.buckets) if seconds <= bound), None)
        with self._lock:
            counts = self._histograms.setdefault(labels, [0] * (len(self.buckets) + 1))
            counts[len(self.buckets) if index is None else index] += 1
            self._sums[labels] = self._sums.get(labels, 0.0) + seconds
            self._counts[labels] = self._counts.get(labels, 0) + 1

    def count_postings(self, kinds: Counter[str]) -> None:
        with self._lock:
            self._postings.update(kinds)

    def watch_postings(self, factory: sessionmaker[Session]) -> None:
        """Counts the ledger transactions that sessions of `factory` insert (through
        `ledger.post`) or that a route notes (`note_posting`: bulk paths that bypass the ORM),
        once their database transaction commits."""
        table = LedgerTransaction.__tablename__

        @event.listens_for(factory, "do_orm_execute")
        def _seen(state: ORMExecuteState) -> None:
            statement = state.statement
            if not isinstance(statement, Insert) or getattr(statement.table, "name", None) != table:
                return
            params = state.parameters
            rows: list[Mapping[str, Any]] = (
                [params] if isinstance(params, Mapping) else list(params or [])
            )
            for row in rows:
                note_posting(state.session, str(row.get("kind", "unknown")))

        @event.listens_for(factory, "after_commit")
        def _committed(session: Session) -> None:
            pending = session.info.pop(_PENDING_POSTINGS, None)
            if pending:
                self.count_postings(pending)

        @event.listens_for(factory, "after_rollback")
        def _rolled_back(session: Session) -> None:
            session.info.pop(_PENDING_POSTINGS, None)

    def render(self, *, engine: Engine, now: Callable[[], datetime]) -> str:
        """The exposition text; reads the outbox lag from the database now."""
        lines: list[str] = []
        with self._lock:
            histograms = {k: list(v) for k, v in self._histograms.items()}
            sums, counts = dict(self._sums), dict(self._counts)
            postings = dict(self._postings)
        name = "fideliza_http_request_duration_seconds"
        lines += [
            f"# HELP {name} Time to serve a request, by route template, method and status class.",
            f"# TYPE {name} histogram",
        ]
        for labels in sorted(histograms):
            cumulative = 0
            for bound, count in zip((*self.buckets, math.inf), histograms[labels], strict=True):
                cumulative += count
                bucket = _labels((*labels, ("le", _number(bound))))
                lines.append(f"{name}_bucket{bucket} {cumulative}")
            lines.append(f"{name}_sum{_labels(labels)} {_number(sums[labels])}")
            lines.append(f"{name}_count{_labels(labels)} {counts[labels]}")
        name = "fideliza_http_requests_total"
        lines += [
            f"# HELP {name} Requests served, by route template, method and status class.",
            f"# TYPE {name} counter",
        ]
        lines += [f"{name}{_labels(labels)} {counts[labels]}" for labels in sorted(counts)]
        name = "fideliza_ledger_transactions_total"
        lines += [
            f"# HELP {name} Points postings committed by this process, by ledger transaction kind.",
            f"# TYPE {name} counter",
        ]
        lines += [f'{name}{{kind="{_escape(k)}"}} {postings[k]}' for k in sorted(postings)]
        lines += self._outbox(engine, now)
        return "\n".join(lines) + "\n"

    @staticmethod
    def _outbox(engine: Engine, now: Callable[[], datetime]) -> list[str]:
        lag = "fideliza_outbox_lag_seconds"
        pending = "fideliza_outbox_pending"
        up = "fideliza_database_up"
        lines = [
            f"# HELP {up} Whether the database answered this scrape.",
            f"# TYPE {up} gauge",
        ]
        try:
            with Session(engine) as db:
                oldest, waiting = db.execute(
                    select(func.min(OutboxEvent.created_at), func.count()).where(
                        OutboxEvent.dispatched_at.is_(None)
                    )
                ).one()
        except SQLAlchemyError as error:
            log.warning("metrics: cannot read the outbox: %s", error)
            return [*lines, f"{up} 0"]
        age = max(0.0, (now() - oldest).total_seconds()) if oldest is not None else 0.0
        return [
            *lines,
            f"{up} 1",
            f"# HELP {lag} Age of the oldest event not yet dispatched (0 when none waits).",
            f"# TYPE {lag} gauge",
            f"{lag} {_number(age)}",
            f"# HELP {pending} Events not yet dispatched.",
            f"# TYPE {pending} gauge",
            f"{pending} {int(waiting)}",
        ]


def note_posting(db: Session, kind: str, count: int = 1) -> None:
    """Notes ledger transactions posted in `db`'s transaction (counted if it commits); for
    postings written without the ORM (the bulk purchase path), which the watch cannot see."""
    pending: Counter[str] = db.info.setdefault(_PENDING_POSTINGS, Counter())
    pending[kind] += count


def route_of(scope: Mapping[str, Any]) -> str:
    """The route template a request matched (`/v1/members/{member_id}`), never the raw path,
    so that ids do not multiply the series; `unmatched` for 404s of unknown paths."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
