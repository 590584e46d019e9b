"""Group commit for `POST /v1/purchases`: purchases that arrive together are recorded together.

The purchase engine has a large fixed cost per batch (member locks, rules, tiers, system
accounts, id allocation, the commit), so a batch of one costs ~6 ms of CPU and a batch of 16
~0.5 ms per purchase (measured on PostgreSQL). Tills send one purchase per request; this
module batches the requests a worker process is serving at the same moment.

Natural batching, no timer: a request queues its purchase and waits for its program's lock;
whoever gets the lock records everything queued for that program in one transaction. Alone, a
request is a batch of one, recorded at once (no added latency); under load, a batch is what
arrived while the previous one was being written.

Each request gets exactly what it would get alone: its own outcome, or its own error (an
unknown member, a reused `external_id` with other content, a suspended member), the others of
the batch being recorded. A batch that fails as a whole (a database error) is retried one
purchase per transaction, so that only the culprit sees the error. Two requests with the same
`external_id` in one batch behave as if sent one after the other: the second is a replay.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from fideliza.api.metrics import note_posting
from fideliza.core.errors import FidelizaError
from fideliza.db import unit_of_work
from fideliza.ledger.domain import TxKind
from fideliza.programs import service as programs
from fideliza.purchases import service as purchases
from fideliza.purchases.domain import PurchaseInput, parse_purchase
from fideliza.purchases.ingest import Outcome

MAX_BATCH = 64


@dataclass(slots=True)
class _Slot:
    """One request's purchase, and what became of it."""

    data: Mapping[str, Any]
    now: datetime
    done: bool = False
    parsed: PurchaseInput | None = None
    outcome: Outcome | None = None
    error: BaseException | None = None

    def reset(self) -> None:
        self.parsed, self.outcome, self.error = None, None, None


@dataclass(slots=True)
class _Program:
    """The queue of one program's purchases and the lock its batches are written under."""

    queue: list[_Slot] = field(default_factory=list)
    queued: threading.Lock = field(default_factory=threading.Lock)
    writing: threading.Lock = field(default_factory=threading.Lock)


class PurchaseGroups:
    """Records purchases of concurrent requests in shared batches (one per program at a time
    in this process). Thread-safe: called from the thread pool that runs the routes."""

    def __init__(self, factory: sessionmaker[Session], *, max_batch: int = MAX_BATCH) -> None:
        self.factory = factory
        self.max_batch = max_batch
        self._programs: dict[int, _Program] = {}
        self._lock = threading.Lock()

    def record(self, *, program_id: int, data: Mapping[str, Any], now: datetime) -> Outcome:
        """Records one purchase (a service payload), waiting for the batch it joins; raises
        the purchase's own error, as `purchases.record_purchase` would."""
        slot = _Slot(data=data, now=now)
        group = self._program(program_id)
        with group.queued:
            group.queue.append(slot)
        with group.writing:
            while not slot.done:  # ours is queued: write batches until it has been written
                with group.queued:
                    batch = group.queue[: self.max_batch]
                    del group.queue[: self.max_batch]
                self._write(program_id, batch)
        if slot.error is not None:
            raise slot.error
        assert slot.outcome is not None
        return slot.outcome

    def _program(self, program_id: int) -> _Program:
        with self._lock:
            found = self._programs.get(program_id)
            if found is None:
                found = self._programs[program_id] = _Program()
            return found

    def _write(self, program_id: int, batch: list[_Slot]) -> None:
        try:
            try:
                with unit_of_work(self.factory) as db:
                    _record(db, program_id, batch)
            except Exception as error:
                if len(batch) == 1:
                    batch[0].reset()
                    batch[0].error = error
                    return
                for slot in batch:  # one at a time: only the culprit gets the error
                    slot.reset()
                    try:
                        with unit_of_work(self.factory) as db:
                            _record(db, program_id, [slot])
                    except Exception as alone:
                        slot.reset()
                        slot.error = alone
        finally:
            for slot in batch:
                if slot.outcome is None and slot.error is None:  # never, but never hang
                    slot.error = RuntimeError("the purchase batch ended without an outcome")
                slot.done = True


def _record(db: Session, program_id: int, batch: list[_Slot]) -> None:
    """Records the batch in `db` (the caller commits) through `purchases.record_purchases`."""
    program = programs.get(db, program_id=program_id)
    good: list[_Slot] = []
    for slot in batch:
        try:
            slot.parsed = parse_purchase(slot.data, program_currency=program.currency)
        except FidelizaError as error:
            slot.error = error
            continue
        good.append(slot)
    if not good:
        return
    answers = purchases.record_purchases(
        db,
        program=program,
        purchases=[slot.parsed for slot in good if slot.parsed is not None],
        now=max(slot.now for slot in good),
    )
    for slot, answer in zip(good, answers, strict=True):
        if isinstance(answer, FidelizaError):
            slot.error = answer
            continue
        slot.outcome = answer
        if answer.transaction_id is not None and not answer.replayed:
            note_posting(db, TxKind.EARN.value)  # written in bulk, unseen by the metrics' watch
