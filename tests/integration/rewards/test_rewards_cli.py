"""`fideliza rewards …` driven in-process against the test databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

from click.testing import Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from fideliza import cli
from fideliza.db import unit_of_work
from fideliza.ledger import service as ledger
from fideliza.rewards.models import Redemption, Reward
from tests.factories import make_member, make_program
from tests.integration.rewards.builders import fund

NOW = "2025-03-10T12:00:00+00:00"


def run(url: str, code: str, *args: str) -> Result:
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
    at = [] if args[0] == "list" else ["--now", NOW]
    return runner.invoke(cli.app, ["rewards", *args, "--database-url", url, "--program", code, *at])


def test_add_list_catalog_redeem_capture_and_release(
    database_url: str, session_factory: sessionmaker[Session], now: datetime
) -> None:
    with unit_of_work(session_factory) as db:
        program = make_program(db, now=now)
        member = make_member(db, program=program, now=now, external_id="ANA")
        fund(db, program=program, member=member, points=250, now=now)
    code = program.code

    added = run(database_url, code, "add", "--code", "mug", "--name", "Mug", "--kind", "gift",
                "--points", "200", "--stock", "2")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "reward mug added" in added.output
    run(database_url, code, "add", "--code", "tote", "--name", "Tote bag", "--kind", "gift",
        "--points", "400")  # fmt: skip

    listed = run(database_url, code, "list")
    assert "Mug" in listed.output and "Tote bag" in listed.output and "∞" in listed.output

    view = run(database_url, code, "catalog", "--id", "ANA")
    assert view.exit_code == 0, view.output
    assert "250 points available" in view.output
    assert "next reward: Tote bag, 150 points away" in view.output

    held = run(database_url, code, "redeem", "mug", "--id", "ANA", "--reference", "cli-1")
    assert held.exit_code == 0, held.output
    with session_factory() as db:
        redemption = db.scalar(select(Redemption).where(Redemption.reference == "cli-1"))
        assert redemption is not None and redemption.status == "held"
        reward = db.get(Reward, redemption.reward_id)
        assert reward is not None and reward.stock == 1
    assert f"redemption {redemption.id} held: 200 points" in held.output

    released = run(database_url, code, "release", str(redemption.id))
    assert released.exit_code == 0, released.output
    again = run(database_url, code, "release", str(redemption.id))
    assert again.exit_code == 2
    assert f"redemption {redemption.id} is released, not held" in again.output

    done = run(database_url, code, "redeem", "mug", "--id", "ANA", "--reference", "cli-2",
               "--capture")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "captured: 200 points" in done.output
    with session_factory() as db:
        assert ledger.balance(db, member_id=member.id).available == 50


def test_bad_input_names_the_field(
    database_url: str, session_factory: sessionmaker[Session], now: datetime
) -> None:
    with unit_of_work(session_factory) as db:
        program = make_program(db, now=now)
        make_member(db, program=program, now=now, external_id="BEA")
    code = program.code
    bad = run(database_url, code, "add", "--code", "cb", "--name", "Cash", "--kind", "cashback",
              "--points", "10")  # fmt: skip
    assert bad.exit_code == 2
    assert "`value` is required for a cashback reward" in bad.output
    bad = run(database_url, code, "add", "--code", "x", "--name", "X", "--kind", "gift",
              "--points", "10", "--tier-cost", "gold")  # fmt: skip
    assert bad.exit_code == 2 and "--tier-cost" in bad.output
    run(database_url, code, "add", "--code", "big", "--name", "Big", "--kind", "gift",
        "--points", "10")  # fmt: skip
    poor = run(database_url, code, "redeem", "big", "--id", "BEA", "--reference", "r")
    assert poor.exit_code == 2
    assert "the reward costs 10 points; the member has 0 available (10 missing)" in poor.output
