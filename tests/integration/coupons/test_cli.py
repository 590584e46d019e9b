"""`fideliza coupons …` in-process against the test database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path

from click.testing import Result
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from fideliza import cli
from fideliza.core import codes
from fideliza.db import unit_of_work
from tests.factories import make_program

NOW = "2025-03-10T12:00:00+00:00"


def _run(url: str, program: str, *args: str, at: str | None = NOW) -> Result:
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
    clock = ["--now", at] if at else []
    return runner.invoke(cli.app, [*args, "--database-url", url, "--program", program, *clock])


def _program(factory: sessionmaker[Session], now: datetime) -> str:
    with unit_of_work(factory) as db:
        return make_program(db, now=now).code


def test_create_generate_validate_redeem_show_void(
    database_url: str, session_factory: sessionmaker[Session], now: datetime, tmp_path: Path
) -> None:
    program = _program(session_factory, now)
    campaign = f"c-{secrets.token_hex(3)}"
    created = _run(
        database_url,
        program,
        "coupons",
        "create",
        "--code",
        campaign,
        "--name",
        "Ten off",
        "--discount",
        '{"type": "fixed", "amount": "10"}',
        "--min-spend",
        "20",
    )
    assert created.exit_code == 0, created.output
    out = tmp_path / "codes.txt"
    generated = _run(
        database_url, program, "coupons", "generate", campaign, "--count", "25", "--out", str(out)
    )
    assert generated.exit_code == 0, generated.output
    lines = out.read_text().split()
    assert len(set(lines)) == 25 and all(codes.check(line) for line in lines)
    code = lines[0]

    small = _run(database_url, program, "coupons", "validate", code, "--amount", "15.00")
    assert small.exit_code == 2 and "coupon_not_applicable" in small.output
    quote = _run(database_url, program, "coupons", "validate", code, "--amount", "30.00")
    assert quote.exit_code == 0 and "10.00 EUR" in quote.output, quote.output
    redeemed = _run(
        database_url,
        program,
        "coupons",
        "redeem",
        code.lower(),
        "--amount",
        "30.00",
        "--purchase",
        "T-1",
    )
    assert redeemed.exit_code == 0 and "10.00 EUR" in redeemed.output, redeemed.output
    again = _run(
        database_url, program, "coupons", "redeem", code, "--amount", "30.00", "--purchase", "T-2"
    )
    assert again.exit_code == 2 and "coupon_not_valid" in again.output
    shown = _run(database_url, program, "coupons", "show", code)
    assert "used_up" in shown.output and "T-1" in shown.output, shown.output
    voided = _run(database_url, program, "coupons", "void", lines[1])
    assert voided.exit_code == 0 and "voided" in voided.output
    listed = _run(database_url, program, "coupons", "list", at=None)
    assert campaign in listed.output


def test_bad_input_names_the_option(
    database_url: str, session_factory: sessionmaker[Session], now: datetime
) -> None:
    program = _program(session_factory, now)
    bad_json = _run(
        database_url,
        program,
        "coupons",
        "create",
        "--code",
        "x-1",
        "--name",
        "X",
        "--discount",
        "{not json",
    )
    assert bad_json.exit_code == 2 and "--discount" in bad_json.output
    bad_rule = _run(
        database_url,
        program,
        "coupons",
        "create",
        "--code",
        "x-2",
        "--name",
        "X",
        "--discount",
        json.dumps({"type": "percent", "percent": "150"}),
    )
    assert bad_rule.exit_code == 2 and "discount.percent" in bad_rule.output
    typo = _run(database_url, program, "coupons", "show", "ABCD-EFGH-JKMN-PQR")
    assert typo.exit_code == 2 and "malformed_code" in typo.output
    unknown = _run(database_url, program, "coupons", "generate", "nope", "--count", "3")
    assert unknown.exit_code == 2 and "campaign" in unknown.output
