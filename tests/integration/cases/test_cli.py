"""`fideliza cases …` driven in-process against the test databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

from click.testing import Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from fideliza import cli
from fideliza.cases.models import Case
from fideliza.db import unit_of_work
from fideliza.ledger import service as ledger
from tests.factories import make_member, make_program

NOW = "2025-03-10T12:00:00+00:00"
LATER = "2025-03-13T12:00:00+00:00"


def run(url: str, code: str, *args: str, at: str | None = NOW) -> Result:
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
    when = ["--now", at] if at else []
    return runner.invoke(cli.app, ["cases", *args, "--database-url", url, "--program", code, *when])


def test_open_work_resolve_with_goodwill_show_list_and_timeline(
    database_url: str, session_factory: sessionmaker[Session], now: datetime
) -> None:
    with unit_of_work(session_factory) as db:
        program = make_program(db, now=now)
        member = make_member(db, program=program, now=now, external_id="ANA")
    code = program.code

    opened = run(database_url, code, "open", "ANA", "--subject", "Wrong order", "--severity",
                 "high", "--category", "delivery", "--channel", "phone")  # fmt: skip
    assert opened.exit_code == 0, opened.output
    assert "opened (high)" in opened.output and "respond by 2025-03-10 16:00Z" in opened.output
    with session_factory() as db:
        case_id = db.scalar(select(Case.id).where(Case.program_id == program.id))
    case = str(case_id)

    assert run(database_url, code, "assign", case, "lucia").exit_code == 0
    assert run(database_url, code, "move", case, "in_progress").exit_code == 0
    refused = run(database_url, code, "move", case, "open")
    assert refused.exit_code == 2
    assert "state" in refused.output and "allowed from in_progress: resolved" in refused.output
    resolved = run(database_url, code, "resolve", case, "--resolution", "Sent the right one",
                   "--apologized", "--goodwill", "40", "--refund", "RF-9")  # fmt: skip
    assert resolved.exit_code == 0, resolved.output
    assert "gave 40 goodwill points, refund RF-9" in resolved.output
    twice = run(database_url, code, "reopen", case, "--reason", "Still wrong")
    assert twice.exit_code == 0, twice.output
    again = run(database_url, code, "resolve", case, "--resolution", "x", "--goodwill", "5")
    assert again.exit_code == 2 and "goodwill_points" in again.output

    shown = run(database_url, code, "show", case, at=LATER)
    assert shown.exit_code == 0, shown.output
    for word in ("Wrong order", "breached: resolution", "resolved", "reopened", "lucia"):
        assert word in shown.output, word
    listed = run(database_url, code, "list", "--breached", at=LATER)
    assert listed.exit_code == 0 and "Wrong order" in listed.output
    on_time = run(database_url, code, "list", "--on-time", at=LATER)
    assert on_time.exit_code == 0 and "Wrong order" not in on_time.output
    bad = run(database_url, code, "list", "--severity", "urgent")
    assert bad.exit_code == 2 and "severity" in bad.output

    line = run(database_url, code, "timeline", "ANA", at=None)
    assert line.exit_code == 0, line.output
    assert "case" in line.output and "+40" in line.output and "Wrong order" in line.output
    with session_factory() as db:
        assert ledger.balance(db, member_id=member.id).available == 40


def test_sla_and_flag_breaches(
    database_url: str, session_factory: sessionmaker[Session], now: datetime
) -> None:
    with unit_of_work(session_factory) as db:
        program = make_program(db, now=now)
        make_member(db, program=program, now=now, external_id="BEA")
    code = program.code
    set_sla = run(database_url, code, "sla", "low", "--respond-minutes", "10",
                  "--resolve-minutes", "20")  # fmt: skip
    assert set_sla.exit_code == 0, set_sla.output
    wrong = run(database_url, code, "sla", "low", "--respond-minutes", "30",
                "--resolve-minutes", "20")  # fmt: skip
    assert wrong.exit_code == 2 and "resolution_minutes" in wrong.output
    assert (
        run(database_url, code, "open", "BEA", "--subject", "x", "--severity", "low").exit_code == 0
    )
    flagged = run(database_url, code, "flag-breaches", at=LATER)
    assert flagged.exit_code == 0 and "2 breach(es) recorded" in flagged.output
    again = run(database_url, code, "flag-breaches", at=LATER)
    assert "0 breach(es) recorded" in again.output
