"""`fideliza demo`: a café chain's program with ~2 years of members, purchases and returns.

It goes through the same services as real traffic (rules, tiers, the batch engine, returns,
catalog redemptions, coupons, referrals, surveys, cases, gift cards, jobs), so the demo also
shows the engine at work, and ends with a ledger check. About one member in ten joins through
an earlier member's referral code. Survey links are signed with the fixed
`engagement.DEMO_SURVEY_SECRET` (demo only).
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.core.errors import FidelizaError
from fideliza.db import make_engine, make_session_factory, unit_of_work
from fideliza.demo import engagement
from fideliza.demo.generator import (
    PROGRAM_TIMEZONE,
    generate_members,
    generate_purchases,
    generate_returns,
)
from fideliza.jobs.service import run_jobs
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.models import Entry
from fideliza.members import service as members
from fideliza.members.models import Member
from fideliza.migrations import upgrade
from fideliza.programs import service as programs
from fideliza.programs.models import Program
from fideliza.purchases import service as purchases
from fideliza.purchases.ingest import ingest_purchases
from fideliza.referrals import service as referrals
from fideliza.rules import service as rules
from fideliza.tiers import service as tiers

DEMO_CODE = "demo"

DEMO_RULES: list[dict[str, Any]] = [
    {
        "name": "1 point per euro",
        "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
    },
    {
        "name": "Coffee lovers: 2 points per coffee",
        "conditions": {"items": {"include_categories": ["coffee"]}},
        "actions": [{"type": "points_per_item", "points": 2}],
        "caps": {"per_day": 10},
    },
    {
        "name": "Breakfast double points",
        "conditions": {
            "time_window": {"start": "07:00", "end": "10:00"},
            "weekdays": ["mon", "tue", "wed", "thu", "fri"],
        },
        "actions": [{"type": "multiplier", "factor": "2"}],
    },
    {
        "name": "Welcome bonus",
        "conditions": {"first_purchase": True},
        "actions": [{"type": "fixed_bonus", "points": 50}],
    },
    {
        "name": "Birthday month gift",
        "conditions": {"birthday": "month"},
        "actions": [{"type": "fixed_bonus", "points": 100}],
        "caps": {"per_month": 100},
    },
]

DEMO_TIERS: dict[str, Any] = {
    "levels": [
        {"code": "BRONZE", "name": "Bronze", "rank": 1, "threshold": "0", "multiplier": "1"},
        {"code": "SILVER", "name": "Silver", "rank": 2, "threshold": "300", "multiplier": "1.25"},
        {"code": "GOLD", "name": "Gold", "rank": 3, "threshold": "800", "multiplier": "1.5"},
    ],
    "policy": {"basis": "points", "period": "calendar_year", "grace_periods": 1},
}


def load_demo(
    database_url: str, *, member_count: int = 5000, seed: int = 7, console: Console | None = None
) -> dict[str, Any]:
    """Creates the demo program (once) and returns a summary of what is in it."""
    console = console or Console(stderr=True)
    upgrade(database_url)
    factory = make_session_factory(make_engine(database_url))
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=730)
    with factory() as db:
        exists = db.scalar(select(Program.id).where(Program.code == DEMO_CODE)) is not None
    if exists:
        console.print("the demo program is already loaded: showing its summary")
        return summarize(factory)
    people = generate_members(member_count, seed=seed, start=start, end=end - timedelta(days=30))
    with unit_of_work(factory) as db:
        program = programs.create(
            db,
            code=DEMO_CODE,
            name="Café Fideliza",
            currency="EUR",
            timezone=str(PROGRAM_TIMEZONE),
            points_name="granos",
            now=start,
            settings={"return_window_days": 14, "expiry": {"mode": "end_of_month", "months": 12}},
        )
        for definition in DEMO_RULES:
            rules.create(db, program=program, definition=definition, now=start)
        tiers.configure(db, program=program, config=DEMO_TIERS, now=start)
        members_module_rows = [
            {
                "external_id": p.external_id,
                "first_name": p.first_name,
                "last_name": p.last_name,
                "email": p.email,
                "phone": p.phone,
                "birthday": p.birthday,
                "locale": p.locale,
                "attributes": {**p.attributes, "usage": p.usage},
                "consent": {
                    "email": True,
                    "marketing": zlib.crc32(p.external_id.encode()) % 3 != 0,
                },
            }
            for p in people
        ]
        engagement.configure(db, program=program, now=start)
        referred = _referred_indexes(len(people), seed=seed)
        members.enrol_many(
            db,
            program=program,
            rows=[r for i, r in enumerate(members_module_rows) if i not in referred],
            now=start,
        )
        _enrol_referred(db, program, people, members_module_rows, referred, seed=seed, start=start)
    sample = []
    with Progress(
        TextColumn("purchases"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("purchases", total=None)
        batch = []
        for purchase in generate_purchases(people, seed=seed, start=start, end=end):
            batch.append(purchase)
            if len(batch) == 5000:
                _ingest(factory, batch, end)
                bar.advance(task, len(batch))
                sample.extend(batch[::10])
                batch = []
        if batch:
            _ingest(factory, batch, end)
            bar.advance(task, len(batch))
            sample.extend(batch[::10])
    _returns(factory, generate_returns(sample, seed=seed, rate=0.3), end)
    _engage(factory, seed=seed, start=start, end=end)
    run_jobs(factory, program_code=DEMO_CODE, now=end)
    return summarize(factory)


def _ingest(factory: sessionmaker[Session], batch: list[Any], now: datetime) -> None:
    with unit_of_work(factory) as db:
        program = programs.get_by_code(db, code=DEMO_CODE)
        ingest_purchases(db, program=program, purchases=batch, now=now, collect_errors=True)


def _returns(factory: sessionmaker[Session], returns: list[Any], now: datetime) -> None:
    """Records the generated returns; one the rules refuse (nothing left to return) is skipped."""
    with unit_of_work(factory) as db:
        program = programs.get_by_code(db, code=DEMO_CODE)
        for item in returns:
            try:
                with db.begin_nested():  # a savepoint: a refused return leaves nothing behind
                    purchases.record_return(
                        db,
                        program=program,
                        purchase_external_id=item.purchase_external_id,
                        external_id=item.return_external_id,
                        occurred_at=min(item.returned_at, now),
                        now=now,
                        items=[{"sku": sku, "quantity": quantity} for sku, quantity in item.lines],
                    )
            except FidelizaError:
                continue


def _referred_indexes(count: int, *, seed: int) -> set[int]:
    """About one member in ten joins with the code of someone who enrolled before them."""
    rng = np.random.default_rng([seed, 11])
    return {i for i in range(10, count) if rng.random() < 0.1}


def _enrol_referred(
    db: Session,
    program: Program,
    people: list[Any],
    rows: list[dict[str, Any]],
    referred: set[int],
    *,
    seed: int,
    start: datetime,
) -> None:
    """Enrols the referred members one by one, through a code of an earlier member.

    The generator's members are sorted by enrolment, so any lower index enrolled first; the
    purchases generator is untouched (the referred member's first purchase pays the bonus).
    """
    rng = np.random.default_rng([seed, 13])
    by_external_id: dict[str, Member] = {}
    for index in sorted(referred):
        candidates = [i for i in range(max(0, index - 400), index) if i not in referred]
        referrer_ref = people[candidates[int(rng.integers(len(candidates)))]].external_id
        referrer = by_external_id.get(referrer_ref) or members.find(
            db, program_id=program.id, external_id=referrer_ref
        )
        by_external_id[referrer_ref] = referrer
        joined = people[index].enrolled_at
        code = referrals.code_for(db, program=program, member=referrer, now=joined)
        try:
            with db.begin_nested():
                referrals.enrol_with_referral(
                    db, program=program, data=rows[index], referral_code=code, now=joined
                )
        except FidelizaError:  # anti-abuse refused it (a phone already known): a plain enrolment
            members.enrol_many(db, program=program, rows=[rows[index]], now=start)


def _engage(factory: sessionmaker[Session], *, seed: int, start: datetime, end: datetime) -> None:
    """Catalog redemptions, coupons, surveys, cases and gift cards (see `demo.engagement`)."""
    with unit_of_work(factory) as db:
        program = programs.get_by_code(db, code=DEMO_CODE)
        engagement.redeem_catalog(db, program=program, seed=seed, now=end)
        engagement.spring_coupons(db, program=program, seed=seed, now=end - timedelta(days=240))
        engagement.answer_surveys(db, program=program, seed=seed, start=start, end=end)
        engagement.open_cases(db, program=program, seed=seed, end=end)
        engagement.answer_case_surveys(db, program=program, seed=seed)
        engagement.gift_cards(db, program=program, now=end - timedelta(days=20))


def summarize(factory: sessionmaker[Session]) -> dict[str, Any]:
    """Counts, points by fate, tiers and usage groups, and the ledger check."""
    from fideliza.purchases.models import Purchase, Return

    with factory() as db:
        program = programs.get_by_code(db, code=DEMO_CODE)
        system = ledger.system_account_ids(db, program_id=program.id)

        def account_total(kind: Any) -> int:
            return int(
                db.scalar(
                    select(func.coalesce(func.sum(Entry.amount), 0)).where(
                        Entry.account_id == system[kind]
                    )
                )
                or 0
            )

        from fideliza.ledger.domain import AccountKind

        tiers_count = dict(
            db.execute(
                select(Member.tier_code, func.count())
                .where(Member.program_id == program.id)
                .group_by(Member.tier_code)
            ).all()
        )
        usage: dict[str, int] = {}
        for attributes in db.scalars(
            select(Member.attributes).where(Member.program_id == program.id)
        ):
            group = str((attributes or {}).get("usage", "unknown"))
            usage[group] = usage.get(group, 0) + 1
        sample_member = db.scalar(
            select(Member.external_id).where(Member.program_id == program.id).limit(1)
        )
        return {
            "program": program.code,
            "database": db.get_bind().engine.url.render_as_string(),
            "members": db.scalar(
                select(func.count()).select_from(Member).where(Member.program_id == program.id)
            ),
            "purchases": db.scalar(
                select(func.count()).select_from(Purchase).where(Purchase.program_id == program.id)
            ),
            "returns": db.scalar(
                select(func.count()).select_from(Return).where(Return.program_id == program.id)
            ),
            "points_issued": -account_total(AccountKind.ISSUANCE),
            "points_redeemed": account_total(AccountKind.REDEEMED),
            "points_expired": account_total(AccountKind.EXPIRED),
            "usage_groups": dict(sorted(usage.items())),
            "tiers": {
                str(k or "none"): v
                for k, v in sorted(tiers_count.items(), key=lambda kv: str(kv[0]))
            },
            **engagement.summary(db, program_id=program.id, now=datetime.now(UTC)),
            "ledger_check": "consistent"
            if not check_ledger(db, program_id=program.id)
            else "DIFFERENCES",
            "try": f".venv/bin/fideliza member show --program demo --id {sample_member}",
            "api_key": ".venv/bin/fideliza apikey create --program demo --name me --scopes admin",
        }
