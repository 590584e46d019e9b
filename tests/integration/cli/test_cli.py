"""The real `fideliza` Typer app, driven in-process against a fresh SQLite file (and PostgreSQL)."""

from __future__ import annotations

import csv
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import text
from typer.testing import CliRunner

from fideliza import cli
from fideliza.db import make_engine, make_session_factory, unit_of_work
from fideliza.members import service as members
from fideliza.programs import service as programs
from fideliza.purchases import importer
from fideliza.purchases.files import COLUMNS

NOW = "2025-03-10T12:00:00+00:00"
ONE_PER_EURO = {
    "name": "1 pt per euro",
    "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
}
LADDER = {
    "levels": [
        {"code": "BRONZE", "name": "Bronze", "rank": 1, "threshold": "0"},
        {"code": "SILVER", "name": "Silver", "rank": 2, "threshold": "30", "multiplier": "1.5"},
    ],
    "policy": {"basis": "points", "period": "calendar_month"},
}
COF = '[{"sku":"COF","category":"coffee","quantity":2,"unit_price":"5.00"}]'
# (line in the file, row); the header is line 1. Four good rows and four bad ones.
ROWS: list[tuple[int, list[str]]] = [
    (2, ["T1", "M1", "2025-03-01T09:00:00+01:00", "25.00", "EUR", "store", "S1", COF]),
    (3, ["T3", "M1", "2025-03-01T10:00:00+01:00", "", "EUR", "store", "S1", ""]),
    (4, ["T2", "M2", "2025-03-02T09:00:00+01:00", "12.50", "EUR", "web", "", ""]),
    (5, ["T4", "M1", "2025-03-02T10:00:00", "10.00", "EUR", "store", "S1", ""]),
    (6, ["T5", "NOBODY", "2025-03-03T09:00:00+01:00", "10.00", "EUR", "store", "S1", ""]),
    (7, ["T7", "M3", "2025-03-04T09:00:00+01:00", "30.00", "EUR", "store", "S2", ""]),
    (
        8,
        [
            "T6",
            "M2",
            "2025-03-05T09:00:00+01:00",
            "5.00",
            "EUR",
            "store",
            "S1",
            '[{"sku":"CAK","quantity":-1,"unit_price":"5.00"}]',
        ],
    ),
    (9, ["T8", "M2", "2025-03-06T09:00:00+01:00", "8.00", "EUR", "store", "S1", ""]),
]
GOOD = {"T1": 25, "T2": 12, "T7": 30, "T8": 8}
BAD = {3: "amount", 5: "occurred_at", 6: "member_id", 8: "items[0].quantity"}


@dataclass
class Target:
    """A database the CLI is pointed at, and the program code the test works in."""

    url: str
    code: str

    def run(self, *args: str, program: bool = True) -> Result:
        """Invokes `fideliza <args> --database-url … [--program …]` in-process."""
        extra = ["--database-url", self.url]
        if program:
            extra += ["--program", self.code]
        # Wide, so Rich never wraps a line the test reads.
        runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
        return runner.invoke(cli.app, [*args, *extra])

    def scalar(self, sql: str, **params: Any) -> Any:
        engine = make_engine(self.url)
        try:
            with engine.connect() as connection:
                return connection.execute(text(sql), {"code": self.code, **params}).scalar()
        finally:
            engine.dispose()

    def execute(self, sql: str, **params: Any) -> None:
        engine = make_engine(self.url)
        try:
            with engine.begin() as connection:
                connection.execute(text(sql), {"code": self.code, **params})
        finally:
            engine.dispose()

    def count(self, table: str) -> int:
        return int(
            self.scalar(
                f"SELECT COUNT(*) FROM {table} t JOIN programs p ON p.id = t.program_id "
                "WHERE p.code = :code"
            )
        )

    def enrol(self, *external_ids: str) -> None:
        engine = make_engine(self.url)
        try:
            with unit_of_work(make_session_factory(engine)) as db:
                program = programs.get_by_code(db, code=self.code)
                rows = [{"external_id": e, "first_name": f"Name {e}"} for e in external_ids]
                members.enrol_many(db, program=program, rows=rows, now=datetime.now(UTC))
        finally:
            engine.dispose()

    def set_settings(self, **changes: Any) -> None:
        engine = make_engine(self.url)
        try:
            with unit_of_work(make_session_factory(engine)) as db:
                program = programs.get_by_code(db, code=self.code)
                programs.update_settings(
                    db, program=program, changes=changes, now=datetime.now(UTC)
                )
        finally:
            engine.dispose()


def sqlite_target(tmp_path: Path) -> Target:
    return Target(url=f"sqlite:///{tmp_path / 'fideliza.db'}", code="cafe")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Target:
    """A fresh SQLite file for this test, not created yet (`init` creates it)."""
    return sqlite_target(tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """A fresh SQLite file, or the run's PostgreSQL database with a program code of its own."""
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
        return Target(url=url, code=f"cli-{secrets.token_hex(4)}")
    return sqlite_target(tmp_path)


def write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def write_csv(path: Path, rows: list[tuple[int, list[str]]] = ROWS) -> Path:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(COLUMNS)
        for _, row in rows:
            writer.writerow(row)
    return path


def ready(target: Target, tmp_path: Path, *, rule: bool = True) -> None:
    """`init`, a rule, and members M1–M3."""
    result = target.run("init", "--code", target.code, program=False)
    assert result.exit_code == 0, result.output
    if rule:
        result = target.run("program", "rule", str(write(tmp_path / "rule.json", ONE_PER_EURO)))
        assert result.exit_code == 0, result.output
    target.enrol("M1", "M2", "M3")


def bad_lines(output: str) -> dict[int, str]:
    return {int(m[1]): m[2] for m in re.finditer(r"^\s*line (\d+): (\S+):", output, re.M)}


# --- set-up commands ---------------------------------------------------------------------------


def test_init_creates_the_schema_and_a_program_once(any_db: Target) -> None:
    result = any_db.run("init", "--code", any_db.code, "--currency", "EUR", program=False)
    assert result.exit_code == 0, result.output
    assert f"program {any_db.code} created (EUR, Europe/Madrid)" in result.stdout
    assert any_db.scalar("SELECT timezone FROM programs WHERE code = :code") == "Europe/Madrid"
    again = any_db.run("init", "--code", any_db.code, program=False)
    assert again.exit_code == 2
    assert "(conflict) code:" in again.stderr
    assert any_db.scalar("SELECT COUNT(*) FROM programs WHERE code = :code") == 1


def test_init_refuses_a_bad_time_zone_and_names_it(sqlite_db: Target) -> None:
    result = sqlite_db.run("init", "--timezone", "Europe/Narnia", program=False)
    assert result.exit_code == 2
    assert "timezone: unknown IANA time zone 'Europe/Narnia'" in result.stderr


def test_program_rule_adds_a_rule_and_a_malformed_one_names_the_field(
    any_db: Target, tmp_path: Path
) -> None:
    ready(any_db, tmp_path, rule=False)
    good = any_db.run("program", "rule", str(write(tmp_path / "good.json", ONE_PER_EURO)))
    assert good.exit_code == 0, good.output
    assert "rule 1 pt per euro created" in good.stdout
    bad_rule = {
        **ONE_PER_EURO,
        "name": "bad",
        "actions": [{"type": "points_per_amount", "points": 1, "per": 0.5}],
    }
    bad = any_db.run("program", "rule", str(write(tmp_path / "bad.json", bad_rule)))
    assert bad.exit_code == 2
    assert "(validation_error) definition.actions[0].per: must be a decimal string" in bad.stderr
    not_json = any_db.run("program", "rule", str(write(tmp_path / "x.json", "{name: 1}")))
    assert not_json.exit_code == 2
    assert "definition: is not valid JSON" in not_json.stderr
    assert any_db.count("rules") == 1


def test_program_tiers_sets_the_ladder_and_a_bad_one_names_the_field(
    any_db: Target, tmp_path: Path
) -> None:
    ready(any_db, tmp_path, rule=False)
    result = any_db.run("program", "tiers", str(write(tmp_path / "tiers.json", LADDER)))
    assert result.exit_code == 0, result.output
    assert "2 tiers set" in result.stdout
    bad = json.loads(json.dumps(LADDER))
    bad["levels"][1]["threshold"] = "-5"
    result = any_db.run("program", "tiers", str(write(tmp_path / "bad.json", bad)))
    assert result.exit_code == 2
    assert "levels[1].threshold:" in result.stderr
    assert any_db.count("tier_levels") == 2


def test_the_program_must_be_chosen_when_there_are_several(sqlite_db: Target) -> None:
    assert sqlite_db.run("init", "--code", "one", program=False).exit_code == 0
    assert sqlite_db.run("init", "--code", "two", program=False).exit_code == 0
    result = sqlite_db.run("jobs", "run", program=False)
    assert result.exit_code == 2
    assert "--program: choose a program with --program (programs: one, two)" in result.stderr


# --- import ------------------------------------------------------------------------------------


def test_import_keeps_the_good_rows_lists_the_bad_ones_and_never_doubles(
    any_db: Target, tmp_path: Path
) -> None:
    ready(any_db, tmp_path)
    path = write_csv(tmp_path / "purchases.csv")
    first = any_db.run("import", "purchases", str(path), "--now", NOW)
    assert first.exit_code == 1, first.output
    assert "8 rows read: 4 purchases recorded (75 points), 0 already there, 4 bad rows" in (
        first.stdout
    )
    assert bad_lines(first.stdout) == BAD
    assert "resumed" not in first.stdout
    assert any_db.count("purchases") == 4
    assert any_db.count("ledger_transactions") == 4
    points = any_db.scalar(
        "SELECT SUM(points_earned) FROM purchases pu JOIN programs p ON p.id = pu.program_id "
        "WHERE p.code = :code"
    )
    assert points == sum(GOOD.values()) == 75
    # The same file again: everything is already there, the bad rows are still bad.
    again = any_db.run("import", "purchases", str(path), "--now", NOW)
    assert again.exit_code == 1, again.output
    assert "8 rows read: 0 purchases recorded (0 points), 4 already there, 4 bad rows" in (
        again.stdout
    )
    assert bad_lines(again.stdout) == BAD
    assert any_db.count("purchases") == 4
    assert any_db.count("ledger_transactions") == 4
    # The same purchases in another file (another fingerprint) are replays too.
    copy = write_csv(tmp_path / "copy.csv", [r for r in ROWS if r[1][0] in GOOD])
    third = any_db.run("import", "purchases", str(copy), "--now", NOW)
    assert third.exit_code == 0, third.output
    assert "4 rows read: 0 purchases recorded (0 points), 4 already there, 0 bad rows" in (
        third.stdout
    )
    assert any_db.count("ledger_transactions") == 4


def test_a_crashed_import_resumes_after_the_committed_batches(
    sqlite_db: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready(sqlite_db, tmp_path)
    path = write_csv(tmp_path / "purchases.csv")
    real = importer.ingest_purchases
    calls = 0

    def crash_on_second_batch(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(importer, "ingest_purchases", crash_on_second_batch)
    crashed = sqlite_db.run("import", "purchases", str(path), "--batch-size", "2", "--now", NOW)
    assert isinstance(crashed.exception, RuntimeError) and crashed.exit_code == 1
    assert sqlite_db.count("purchases") == 1  # the first batch (lines 2-3: T1 and a bad row)
    monkeypatch.setattr(importer, "ingest_purchases", real)

    resumed = sqlite_db.run("import", "purchases", str(path), "--batch-size", "2", "--now", NOW)
    assert resumed.exit_code == 1, resumed.output
    assert "resumed after row 2" in resumed.stdout
    assert "6 rows read: 3 purchases recorded (50 points), 0 already there" in resumed.stdout
    # The bad row of the batch committed before the crash is still reported.
    assert bad_lines(resumed.stdout) == BAD
    assert sqlite_db.count("purchases") == 4
    assert sqlite_db.count("ledger_transactions") == 4
    assert sqlite_db.scalar("SELECT COUNT(DISTINCT external_id) FROM purchases") == sqlite_db.count(
        "purchases"
    )
    assert sqlite_db.run("ledger", "check").exit_code == 0


def test_import_of_a_file_without_a_required_column_names_it(
    sqlite_db: Target, tmp_path: Path
) -> None:
    ready(sqlite_db, tmp_path)
    path = write(tmp_path / "bad.csv", "external_id,member_id,occurred_at\nT1,M1,2025-03-01\n")
    result = sqlite_db.run("import", "purchases", str(path))
    assert result.exit_code == 2
    assert "(validation_error) amount: " in result.stderr and "required" in result.stderr
    assert sqlite_db.count("purchases") == 0


# --- jobs --------------------------------------------------------------------------------------


def test_jobs_run_twice_does_nothing_the_second_time(sqlite_db: Target, tmp_path: Path) -> None:
    ready(sqlite_db, tmp_path)
    sqlite_db.set_settings(return_window_days=14, expiry={"mode": "days", "days": 60})
    assert sqlite_db.run("program", "tiers", str(write(tmp_path / "t.json", LADDER))).exit_code == 0
    path = write_csv(tmp_path / "p.csv")
    assert sqlite_db.run("import", "purchases", str(path), "--now", NOW).exit_code == 1
    assert sqlite_db.scalar("SELECT SUM(balance) FROM accounts WHERE kind = 'pending'") == 75

    def jobs(now: str) -> dict[str, Any]:
        result = sqlite_db.run("jobs", "run", "--now", now)
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    nothing = {
        "program": "cafe",
        "lots_unlocked": 0,
        "redemptions_expired": 0,
        "holds_released": 0,
        "points_expired": 0,
        "points_expiring": None,  # no webhook endpoint listens to points.expiring
        "tier_changes": None,  # this period's review is done: nothing was due
        "gift_cards_expired": 0,
        "referrals_rewarded": 0,
        "lifecycle_bonuses": {"welcome": 0, "birthday": 0, "anniversary": 0, "appreciation": 0},
        "survey_invitations": 0,
        "case_breaches": 0,
        "messages_queued": None,  # the program writes no messages (no template)
        "idempotency_keys_purged": 0,
        "messages_sent": None,  # no FIDELIZA_SECRET_KEY: nothing is sent
    }
    # 2 April: the return window of every purchase (1–6 March) has closed; March's tiers are
    # reviewed and kept (M3 reached SILVER with 30 points in March).
    april = "2025-04-02T08:00:00+00:00"
    assert jobs(april) == {**nothing, "lots_unlocked": 4, "tier_changes": 0}
    assert jobs(april) == nothing
    assert sqlite_db.scalar("SELECT SUM(balance) FROM accounts WHERE kind = 'available'") == 75
    assert sqlite_db.scalar("SELECT SUM(balance) FROM accounts WHERE kind = 'pending'") == 0
    # 2 June: every lot is past its 60 days; May's review drops M3 (no points in May).
    june = "2025-06-02T08:00:00+00:00"
    assert jobs(june) == {**nothing, "points_expired": 75, "tier_changes": 1}
    assert jobs(june) == nothing
    assert sqlite_db.scalar("SELECT SUM(balance) FROM accounts WHERE kind = 'available'") == 0
    assert sqlite_db.scalar("SELECT tier_code FROM members WHERE external_id = 'M3'") == "BRONZE"
    assert sqlite_db.run("ledger", "check").exit_code == 0


# --- member show, ledger check, dry-run --------------------------------------------------------


def test_member_show_gives_balance_card_tier_and_history(any_db: Target, tmp_path: Path) -> None:
    ready(any_db, tmp_path)
    assert any_db.run("program", "tiers", str(write(tmp_path / "t.json", LADDER))).exit_code == 0
    assert any_db.run("import", "purchases", str(write_csv(tmp_path / "p.csv"))).exit_code == 1
    result = any_db.run("member", "show", "--id", "M2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Name M2  (M2)" in out
    assert "status active;" in out
    card = re.search(r"card (\d{16})  QR FIDELIZA:" + re.escape(any_db.code) + r":(\d{16})", out)
    assert card is not None and card[1] == card[2]
    assert "points: 20 available, 0 pending, 0 held" in out  # T2 12 + T8 8
    assert "tier BRONZE" in out
    history = [line for line in out.splitlines() if " earn " in line]
    assert len(history) == 2
    rule_id = any_db.scalar(
        "SELECT r.id FROM rules r JOIN programs p ON p.id = r.program_id WHERE p.code = :code"
    )
    # Latest first; each line says why, down to the rule and its version.
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in history]
    assert cells == [
        [
            "2025-03-06 08:00",
            "earn",
            "+8",
            f"1 pt per 1.00 on 8.00 → 8 (1 pt per euro v1) [rule {rule_id} v1]",
        ],
        [
            "2025-03-02 08:00",
            "earn",
            "+12",
            f"1 pt per 1.00 on 12.50 → 12 (1 pt per euro v1) [rule {rule_id} v1]",
        ],
    ]
    by_card = any_db.run("member", "show", "--card", " ".join([card[1][:8], card[1][8:]]))
    assert by_card.exit_code == 0 and "(M2)" in by_card.stdout
    missing = any_db.run("member", "show", "--id", "M9")
    assert missing.exit_code == 2
    assert "(not_found) external_id: no member with external_id 'M9'" in missing.stderr


def test_ledger_check_passes_then_names_a_corrupted_account(any_db: Target, tmp_path: Path) -> None:
    ready(any_db, tmp_path)
    assert any_db.run("import", "purchases", str(write_csv(tmp_path / "p.csv"))).exit_code == 1
    clean = any_db.run("ledger", "check")
    assert clean.exit_code == 0, clean.output
    assert "ledger consistent" in clean.stdout
    member_id = any_db.scalar(
        "SELECT m.id FROM members m JOIN programs p ON p.id = m.program_id "
        "WHERE p.code = :code AND m.external_id = 'M1'"
    )
    account = f"member:{member_id}:available"
    update = (
        "UPDATE accounts SET balance = balance + :by WHERE code = :account "
        "AND program_id = (SELECT id FROM programs WHERE code = :code)"
    )
    any_db.execute(update, by=7, account=account)
    try:
        broken = any_db.run("ledger", "check")
        assert broken.exit_code == 1
        assert (
            f"cached balance equals the sum of entries: {account} expected 25, found 32"
            in broken.stdout
        )
        assert "difference(s)" in broken.stdout
    finally:
        any_db.execute(update, by=-7, account=account)
    assert any_db.run("ledger", "check").exit_code == 0


def test_ledger_check_of_an_unknown_program_names_it(any_db: Target) -> None:
    assert any_db.run("init", "--code", any_db.code, program=False).exit_code == 0
    result = CliRunner().invoke(
        cli.app, ["ledger", "check", "--database-url", any_db.url, "--program", "nope"]
    )
    assert result.exit_code == 2, result.output
    assert "(not_found) program: program 'nope' does not exist" in result.stderr


def test_dry_run_explains_and_writes_nothing(sqlite_db: Target, tmp_path: Path) -> None:
    ready(sqlite_db, tmp_path)
    first_purchase = {
        "name": "welcome",
        "conditions": {"first_purchase": True},
        "actions": [{"type": "fixed_bonus", "points": 50}],
    }
    added = sqlite_db.run("program", "rule", str(write(tmp_path / "w.json", first_purchase)))
    assert added.exit_code == 0, added.output
    basket = {
        "occurred_at": "2025-03-10T09:00:00+01:00",
        "amount": "25.00",
        "currency": "EUR",
        "channel": "store",
        "items": json.loads(COF),
    }
    path = write(tmp_path / "basket.json", basket)
    anonymous = sqlite_db.run("dry-run", str(path))
    assert anonymous.exit_code == 0, anonymous.output
    assert anonymous.stdout.splitlines()[0] == "25 points"
    as_member = sqlite_db.run("dry-run", str(path), "--member", "M1")
    assert as_member.exit_code == 0, as_member.output
    lines = as_member.stdout.splitlines()
    assert lines[0] == "75 points"
    assert lines[1].strip().startswith("+25") and lines[2].strip().startswith("+50")
    assert any("✓ 1 pt per euro v1" in line for line in lines)
    assert any("✓ welcome v1" in line for line in lines)
    assert sqlite_db.count("purchases") == 0
    assert sqlite_db.count("ledger_transactions") == 0


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"occurred_at": "2025-03-10T09:00:00", "amount": "25.00"}, "occurred_at:"),
        ({"occurred_at": "2025-03-10T09:00:00+01:00", "amount": "-1"}, "amount:"),
        ("{not json", "file:"),
        ([{"amount": "25.00"}], "file:"),
    ],
)
def test_dry_run_of_a_bad_basket_names_the_field(
    sqlite_db: Target, tmp_path: Path, content: Any, field: str
) -> None:
    ready(sqlite_db, tmp_path)
    result = sqlite_db.run("dry-run", str(write(tmp_path / "basket.json", content)))
    assert result.exit_code == 2, result.output
    assert "(validation_error) " + field in result.stderr


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI must use --database-url, never a developer's FIDELIZA_DATABASE_URL."""
    monkeypatch.delenv("FIDELIZA_DATABASE_URL", raising=False)
    yield
