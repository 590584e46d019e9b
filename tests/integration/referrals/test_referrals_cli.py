"""`fideliza referrals …` and `fideliza lifecycle …` in-process on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from click.testing import Result
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from fideliza import cli
from fideliza.commands.referrals import lifecycle_app
from fideliza.db import unit_of_work
from fideliza.ledger import service as ledger
from fideliza.members import service as members
from tests.factories import make_member, make_program

NOW = "2025-03-10T12:00:00+00:00"


def run(url: str, code: str, *args: str, at: str | None = NOW) -> Result:
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
    when = ["--now", at] if at else []
    return runner.invoke(
        cli.app, ["referrals", *args, "--database-url", url, "--program", code, *when]
    )


def run_lifecycle(url: str, code: str, *args: str, at: str = NOW) -> Result:
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
    return runner.invoke(
        lifecycle_app, [*args, "--database-url", url, "--program", code, "--now", at]
    )


def test_configure_code_enrol_list_and_pay(
    database_url: str, session_factory: sessionmaker[Session], now: datetime
) -> None:
    with unit_of_work(session_factory) as db:
        program = make_program(db, now=now)
        make_member(db, program=program, now=now, external_id="ANA")
    code = program.code

    configured = run(
        database_url,
        code,
        "configure",
        "--config",
        '{"trigger": "enrolment", "referrer_points": 40}',
    )
    assert configured.exit_code == 0, configured.output
    assert json.loads(configured.output)["referrer_points"] == 40

    shown = run(database_url, code, "code", "--id", "ANA")
    assert shown.exit_code == 0, shown.output
    referral_code = shown.output.strip()
    assert run(database_url, code, "code", "--id", "ANA").output.strip() == referral_code

    enrolled = run(database_url, code, "enrol", "--code", referral_code, "--id", "BEA",
                   "--first-name", "Bea", "--email", "bea@example.com")  # fmt: skip
    assert enrolled.exit_code == 0, enrolled.output
    assert "member BEA enrolled; referral" in enrolled.output and "qualified" in enrolled.output

    listed = run(database_url, code, "list", "--id", "ANA", at=None)
    assert listed.exit_code == 0, listed.output
    assert "ANA" in listed.output and "BEA" in listed.output

    paid = run(database_url, code, "pay-due")
    assert paid.exit_code == 0, paid.output
    assert "1 referrals rewarded" in paid.output
    with session_factory() as db:
        ana = members.find(db, program_id=program.id, external_id="ANA")
        assert ledger.balance(db, member_id=ana.id).available == 40


def test_errors_name_the_field_and_exit_2(
    database_url: str, session_factory: sessionmaker[Session], now: datetime, tmp_path: Path
) -> None:
    with unit_of_work(session_factory) as db:
        program = make_program(db, now=now)
    code = program.code
    bad_json = run(database_url, code, "configure", "--config", "{nope")
    assert bad_json.exit_code == 2
    assert "--config" in bad_json.output and "not valid JSON" in bad_json.output
    bad_field = tmp_path / "config.json"
    bad_field.write_text('{"referrer_points": -1}')
    refused = run(database_url, code, "configure", "--config", f"@{bad_field}")
    assert refused.exit_code == 2
    assert "config.referrer_points" in refused.output

    run(database_url, code, "configure", "--config", '{"referrer_points": 1}')
    unknown = run(database_url, code, "enrol", "--code", "ABCD-EFGH", "--id", "X")
    assert unknown.exit_code == 2
    assert "referral_code" in unknown.output


def test_lifecycle_configure_and_run(
    database_url: str, session_factory: sessionmaker[Session], now: datetime
) -> None:
    with unit_of_work(session_factory) as db:
        program = make_program(db, now=now)
    code = program.code
    configured = run_lifecycle(
        database_url, code, "configure", "--config", '{"welcome_points": 15}', at=NOW
    )
    assert configured.exit_code == 0, configured.output
    with unit_of_work(session_factory) as db:
        member = make_member(db, program=program, now=now)
    first = run_lifecycle(database_url, code, "run", at="2025-03-10T13:00:00+00:00")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["welcome"] == 1
    again = run_lifecycle(database_url, code, "run", at="2025-03-10T14:00:00+00:00")
    assert json.loads(again.output)["welcome"] == 0
    with session_factory() as db:
        assert ledger.balance(db, member_id=member.id).available == 15
