"""`fideliza giftcards …`, driven in-process against the run's SQLite and PostgreSQL databases."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pytest
from click.testing import Result
from sqlalchemy import update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from fideliza import cli
from fideliza.giftcards.models import MoneyAccount
from fideliza.programs.models import Program
from tests.factories import make_member, make_program

NOW = "2025-03-10T12:00:00+00:00"
CODE = re.compile(r"^([2-9A-Y]{4}(?:-[2-9A-Y]{1,4})+)$", re.M)


@pytest.fixture
def program(db: Session, now: datetime) -> Program:
    made = make_program(db, now=now)
    make_member(db, program=made, now=now, external_id=f"{made.code}-M1")
    db.commit()
    return made


def run(database_url: str, program: Program, *args: str) -> Result:
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
    return runner.invoke(
        cli.app,
        ["giftcards", *args, "--database-url", database_url, "--program", program.code],
    )


def test_issue_prints_the_code_once_and_the_card_lives_through_its_commands(
    database_url: str, program: Program
) -> None:
    issued = run(
        database_url, program, "issue", "40.00", "--pin", "2468", "--member",
        f"{program.code}-M1", "--now", NOW,
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    [code] = CODE.findall(issued.output)
    assert "cannot be shown again" in issued.output and "PIN set" in issued.output

    shown = run(database_url, program, "balance", code, "--pin", "2468", "--now", NOW)
    assert shown.exit_code == 0, shown.output
    assert "40.00 EUR, active, expires never" in shown.output
    assert code not in shown.output  # only the last four characters are ever shown again

    spent = run(
        database_url, program, "spend", code, "15.00", "--pin", "2468", "--key", "t1", "--now", NOW
    )
    assert spent.exit_code == 0, spent.output
    assert "spent 15.00 EUR; balance 25.00 EUR" in spent.output
    transaction = re.search(r"transaction (\d+)", spent.output)
    assert transaction is not None

    again = run(
        database_url, program, "spend", code, "15.00", "--pin", "2468", "--key", "t1", "--now", NOW
    )
    assert again.exit_code == 0 and "a retry" in again.output and "balance 25.00" in again.output

    topped = run(
        database_url, program, "top-up", code, "5.00", "--pin", "2468", "--key", "t2", "--now", NOW
    )
    assert topped.exit_code == 0 and "balance 30.00 EUR" in topped.output, topped.output

    refunded = run(
        database_url, program, "refund", transaction[1], "5.00", "--key", "t3", "--now", NOW
    )
    assert refunded.exit_code == 0 and "balance 35.00 EUR" in refunded.output, refunded.output

    too_much = run(
        database_url, program, "refund", transaction[1], "10.01", "--key", "t4", "--now", NOW
    )
    assert too_much.exit_code == 2 and "refund_exceeds_spend" in too_much.output

    checked = run(database_url, program, "check")
    assert checked.exit_code == 0 and "consistent" in checked.output, checked.output


def test_staff_see_why_a_card_was_refused(database_url: str, program: Program) -> None:
    issued = run(database_url, program, "issue", "10.00", "--pin", "1357", "--now", NOW)
    [code] = CODE.findall(issued.output)

    wrong = run(database_url, program, "balance", code, "--pin", "0000")
    assert wrong.exit_code == 2
    assert "card_not_accepted" in wrong.output and "because: wrong pin" in wrong.output

    typo = run(database_url, program, "balance", code[:-1] + ("2" if code[-1] != "2" else "3"))
    assert typo.exit_code == 2 and "malformed_code" in typo.output


def test_expire_and_check_report_their_findings(
    database_url: str, program: Program, db: Session
) -> None:
    issued = run(
        database_url, program, "issue", "10.00", "--expires", "2025-04-01T00:00:00+00:00",
        "--now", NOW,
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    card_id = int(re.findall(r"gift card (\d+)", issued.output)[0])

    first = run(database_url, program, "expire", "--now", "2025-04-02T00:00:00+00:00")
    second = run(database_url, program, "expire", "--now", "2025-04-03T00:00:00+00:00")
    assert "1 card(s) expired" in first.output and "0 card(s) expired" in second.output

    frozen = run(database_url, program, "status", str(card_id), "closed")
    assert frozen.exit_code == 0 and f"gift card {card_id} is closed" in frozen.output

    db.execute(
        update(MoneyAccount)
        .where(MoneyAccount.program_id == program.id, MoneyAccount.kind == "gift_card")
        .values(balance=Decimal("1.00"))
    )
    db.commit()
    broken = run(database_url, program, "check")
    assert broken.exit_code == 1
    assert "cached balance equals the sum of entries" in broken.output
    assert "expired cards hold nothing" in broken.output
