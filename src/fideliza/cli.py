"""The `fideliza` command: set up, load data, run jobs, inspect members and the ledger."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from fideliza import commands
from fideliza.commands import cases as _cases  # noqa: F401
from fideliza.commands import coupons as _coupons  # noqa: F401
from fideliza.commands import giftcards as _giftcards  # noqa: F401
from fideliza.commands import messaging as _messaging  # noqa: F401
from fideliza.commands import referrals as _referrals  # noqa: F401
from fideliza.commands import rewards as _rewards  # noqa: F401
from fideliza.commands import surveys as _surveys  # noqa: F401
from fideliza.commands.options import DatabaseOption, NowOption, ProgramOption
from fideliza.config import get_settings
from fideliza.core.clock import parse_timestamp
from fideliza.core.errors import FidelizaError, ValidationError
from fideliza.db import make_engine, make_session_factory, unit_of_work

app = typer.Typer(no_args_is_help=True, help="Fideliza: loyalty points, rules, tiers and insight.")
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
import_app = typer.Typer(no_args_is_help=True, help="Bulk imports.")
jobs_app = typer.Typer(no_args_is_help=True, help="Background jobs.")
member_app = typer.Typer(no_args_is_help=True, help="Members.")
ledger_app = typer.Typer(no_args_is_help=True, help="The points ledger.")
program_app = typer.Typer(no_args_is_help=True, help="Programs, rules and tiers.")
apikey_app = typer.Typer(no_args_is_help=True, help="API keys.")
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(jobs_app, name="jobs")
app.add_typer(member_app, name="member")
app.add_typer(ledger_app, name="ledger")
app.add_typer(program_app, name="program")
app.add_typer(apikey_app, name="apikey")
app.add_typer(commands.rewards.app, name="rewards")
app.add_typer(commands.coupons.app, name="coupons")
app.add_typer(commands.giftcards.app, name="giftcards")
app.add_typer(commands.referrals.app, name="referrals")
app.add_typer(commands.referrals.lifecycle_app, name="lifecycle")
app.add_typer(commands.surveys.app, name="surveys")
app.add_typer(commands.cases.app, name="cases")
app.add_typer(commands.messaging.app, name="messages")

console = Console()
errors = Console(stderr=True)


def _url(database_url: str | None) -> str:
    return database_url or get_settings().database_url


def _factory(database_url: str | None) -> sessionmaker[Session]:
    return make_session_factory(make_engine(_url(database_url)))


def _now(raw: str | None) -> datetime:
    return parse_timestamp(raw, field="--now") if raw else datetime.now(UTC)


def _program_code(factory: sessionmaker[Session], code: str | None) -> str:
    if code:
        return code
    from fideliza.programs import service as programs

    with factory() as db:
        found = programs.list_all(db)
    if len(found) != 1:
        names = ", ".join(p.code for p in found) or "none yet"
        raise FidelizaError(
            f"choose a program with --program (programs: {names})", field="--program"
        )
    return found[0].code


def _fail(error: FidelizaError) -> None:
    field = f"[bold]{error.field}[/bold]: " if error.field else ""
    errors.print(f"[red]error[/red] ({error.code}) {field}{escape(error.message)}")
    raise typer.Exit(2)


def _run(work: Any) -> Any:
    try:
        return work()
    except FidelizaError as error:
        _fail(error)


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None) -> None:
    """Creates or migrates the schema to the latest version."""
    from fideliza.migrations import current, upgrade

    url = _url(database_url)
    upgrade(url)
    console.print(
        f"schema at revision [bold]{current(url)}[/bold] "
        f"({make_engine(url).url.render_as_string()})"
    )


@app.command()
def init(
    database_url: DatabaseOption = None,
    code: Annotated[str, typer.Option(help="Program code.")] = "main",
    name: Annotated[str, typer.Option(help="Program name.")] = "My loyalty program",
    currency: Annotated[str, typer.Option(help="ISO 4217 currency.")] = "EUR",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "Europe/Madrid",
    points_name: Annotated[str, typer.Option(help="What the points are called.")] = "points",
) -> None:
    """Creates the database (migrations) and a first program."""
    from fideliza.migrations import upgrade
    from fideliza.programs import service as programs

    upgrade(_url(database_url))
    factory = _factory(database_url)

    def work() -> None:
        with unit_of_work(factory) as db:
            program = programs.create(
                db,
                code=code,
                name=name,
                currency=currency,
                timezone=timezone,
                points_name=points_name,
                now=datetime.now(UTC),
            )
            console.print(f"program [bold]{program.code}[/bold] created ({currency}, {timezone})")

    _run(work)


@program_app.command("list")
def program_list(database_url: DatabaseOption = None) -> None:
    """Lists the programs."""
    from fideliza.programs import service as programs

    with _factory(database_url)() as db:
        table = Table("code", "name", "currency", "timezone", "settings")
        for p in programs.list_all(db):
            table.add_row(p.code, p.name, p.currency, p.timezone, json.dumps(p.settings))
        console.print(table)


@program_app.command("rule")
def program_rule(
    file: Annotated[
        Path, typer.Argument(help="A rule definition (JSON).", exists=True, dir_okay=False)
    ],
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
) -> None:
    """Adds an earning rule from a JSON file (validated; errors name the field)."""
    from fideliza.programs import service as programs
    from fideliza.rules import service as rules

    factory = _factory(database_url)

    def work() -> None:
        with unit_of_work(factory) as db:
            found = programs.get_by_code(db, code=_program_code(factory, program))
            rule = rules.create(
                db, program=found, definition=file.read_text(), now=datetime.now(UTC)
            )
            console.print(f"rule [bold]{rule.name}[/bold] created (id {rule.id}, version 1)")

    _run(work)


@program_app.command("tiers")
def program_tiers(
    file: Annotated[
        Path, typer.Argument(help="Tier levels and policy (JSON).", exists=True, dir_okay=False)
    ],
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
) -> None:
    """Sets the tier ladder and policy from a JSON file."""
    from fideliza.programs import service as programs
    from fideliza.tiers import service as tiers

    factory = _factory(database_url)

    def work() -> None:
        with unit_of_work(factory) as db:
            found = programs.get_by_code(db, code=_program_code(factory, program))
            config = tiers.configure(
                db, program=found, config=file.read_text(), now=datetime.now(UTC)
            )
            console.print(f"{len(config.levels)} tiers set")

    _run(work)


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="What the key is for (e.g. 'till 3, Gran Vía').")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: admin, pos, read.")] = "pos",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
) -> None:
    """Creates an API key and prints it once (only its hash is kept)."""
    from fideliza.apikeys import service as apikeys
    from fideliza.programs import service as programs

    factory = _factory(database_url)

    def work() -> None:
        with unit_of_work(factory) as db:
            found = programs.get_by_code(db, code=_program_code(factory, program))
            row, plaintext = apikeys.create(
                db, program=found, name=name, scopes=scopes, now=datetime.now(UTC)
            )
            console.print(f"key {row.id} ({', '.join(sorted(row.scopes))}) for {found.code}:")
            console.print(plaintext, markup=False, highlight=False)
            errors.print("store it now: it is shown only this once")

    _run(work)


@import_app.command("purchases")
def import_purchases(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet file.", exists=True, dir_okay=False)],
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    batch_size: Annotated[int, typer.Option(help="Purchases per transaction.")] = 50_000,
    now: NowOption = None,
) -> None:
    """Imports purchases (streaming; resumable: run it again after a crash, nothing doubles)."""
    from fideliza.purchases.importer import import_purchases as run_import

    factory = _factory(database_url)

    def work() -> None:
        code = _program_code(factory, program)
        with Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
        ) as bar:
            task = bar.add_task("rows", total=None)
            report = run_import(
                factory,
                program_code=code,
                path=file,
                now=_now(now),
                batch_size=batch_size,
                progress=lambda rows: bar.advance(task, rows),
            )
        if report.resumed_from:
            console.print(f"resumed after row {report.resumed_from}")
        console.print(
            f"{report.rows_read} rows read: {report.recorded} purchases recorded "
            f"({report.points} points), {report.replayed} already there, "
            f"{report.error_count} bad rows"
        )
        for error in report.errors[:50]:
            console.print(f"  line {error.line}: {error.field or '-'}: {escape(error.message)}")
        if report.error_count > 50:
            console.print(f"  … and {report.error_count - 50} more")
        if report.error_count:
            raise typer.Exit(1)

    _run(work)


@jobs_app.command("run")
def jobs_run(
    database_url: DatabaseOption = None, program: ProgramOption = None, now: NowOption = None
) -> None:
    """Unlocks pending points, releases stale holds, expires lots, reviews tiers (safe twice)."""
    from fideliza.jobs.service import run_jobs

    factory = _factory(database_url)

    def work() -> None:
        report = run_jobs(factory, program_code=_program_code(factory, program), now=_now(now))
        console.print_json(json.dumps(report.as_dict()))

    _run(work)


@member_app.command("show")
def member_show(
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    external_id: Annotated[
        str | None, typer.Option("--id", help="The business's member id.")
    ] = None,
    card: Annotated[str | None, typer.Option(help="Card number.")] = None,
    email: Annotated[str | None, typer.Option(help="E-mail.")] = None,
    phone: Annotated[str | None, typer.Option(help="Phone.")] = None,
    history: Annotated[int, typer.Option(help="How many ledger lines to show.")] = 15,
) -> None:
    """Shows a member: profile, card, balances, tier and the latest points with their why."""
    from fideliza.ledger import service as ledger
    from fideliza.ledger.history import member_history
    from fideliza.members import service as members
    from fideliza.members.domain import qr_payload
    from fideliza.programs import service as programs
    from fideliza.tiers import service as tiers

    factory = _factory(database_url)

    def work() -> None:
        with factory() as db:
            found = programs.get_by_code(db, code=_program_code(factory, program))
            member = members.find(
                db,
                program_id=found.id,
                external_id=external_id,
                card=card,
                email=email,
                phone=phone,
            )
            card_row = members.active_card(db, member_id=member.id)
            balance = ledger.balance(db, member_id=member.id)
            status = tiers.status(db, program=found, member=member, now=datetime.now(UTC))
            console.print(
                f"[bold]{member.first_name or ''} {member.last_name or ''}[/bold] "
                f"({member.external_id})"
            )
            console.print(
                f"status {member.status}; enrolled {member.enrolled_at:%Y-%m-%d}; "
                f"e-mail {member.email}"
            )
            if card_row:
                console.print(
                    f"card {card_row.number}  QR {qr_payload(found.code, card_row.number)}"
                )
            console.print(
                f"{found.points_name}: [bold]{balance.available}[/bold] available, "
                f"{balance.pending} pending, {balance.held} held"
            )
            if status is not None:
                following = f"; {status.missing} to {status.next_code}" if status.next_code else ""
                console.print(f"tier {status.code or '-'} (metric {status.metric}{following})")
            table = Table("when", "kind", "points", "why")
            for line in member_history(db, member_id=member.id, limit=history):
                # escape: "[rule 3 v1]" in a why is text, not Rich markup (it would vanish).
                table.add_row(
                    f"{line.occurred_at:%Y-%m-%d %H:%M}",
                    line.kind,
                    f"{line.points:+d}",
                    escape(line.why),
                )
            console.print(table)

    _run(work)


@ledger_app.command("check")
def ledger_check(database_url: DatabaseOption = None, program: ProgramOption = None) -> None:
    """Recomputes every balance from the entries; exit status 1 if anything differs."""
    from fideliza.ledger.check import check_ledger
    from fideliza.programs import service as programs

    factory = _factory(database_url)

    def work() -> list[Any]:
        with factory() as db:
            program_id = programs.get_by_code(db, code=program).id if program else None
            return check_ledger(db, program_id=program_id)

    found = _run(work)  # an unknown program is a usage error (2), not a difference (1)
    for discrepancy in found:
        console.print(f"[red]✗[/red] {discrepancy}")
    if found:
        console.print(f"[red]{len(found)} difference(s)[/red]")
        raise typer.Exit(1)
    console.print("[green]✓[/green] ledger consistent: every balance equals the sum of its entries")


@app.command("dry-run")
def dry_run(
    file: Annotated[Path, typer.Argument(help="A purchase (JSON).", exists=True, dir_okay=False)],
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    member: Annotated[
        str | None, typer.Option(help="Evaluate as this member (external id).")
    ] = None,
) -> None:
    """What would this basket earn, and why (nothing is written)."""
    from fideliza.members import service as members
    from fideliza.programs import service as programs
    from fideliza.purchases import service as purchases

    factory = _factory(database_url)

    def work() -> None:
        with factory() as db:
            found = programs.get_by_code(db, code=_program_code(factory, program))
            who = members.find(db, program_id=found.id, external_id=member) if member else None
            try:
                basket = json.loads(file.read_text())
            except json.JSONDecodeError as error:
                raise ValidationError(f"is not valid JSON: {error}", field="file") from None
            if not isinstance(basket, dict):
                raise ValidationError("must hold one purchase (a JSON object)", field="file")
            result = purchases.dry_run(db, program=found, data=basket, member=who)
            console.print(f"[bold]{result.points}[/bold] {found.points_name}")
            for posting in result.postings:
                console.print(f"  {posting.points:+d}  {escape(posting.reason)}")
            for check in result.checks:
                mark = "[green]✓[/green]" if check.matched else "[dim]✗[/dim]"
                console.print(
                    f"  {mark} {escape(check.name)} v{check.rule_version}: {escape(check.detail)}"
                )

    _run(work)


@app.command()
def demo(
    database_url: DatabaseOption = None,
    members: Annotated[int, typer.Option(help="How many members.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API afterwards.")
    ] = False,
) -> None:
    """Loads a realistic demo program (~2 years of purchases) and prints what it made."""
    from fideliza.demo.loader import load_demo

    url = _url(database_url)

    def work() -> None:
        summary = load_demo(url, member_count=members, seed=seed, console=errors)
        console.print_json(json.dumps(summary))

    _run(work)
    if serve:
        serve_command(database_url=url)


@app.command("serve")
def serve_command(
    database_url: DatabaseOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
) -> None:
    """Serves the HTTP API with uvicorn."""
    import os

    import uvicorn

    settings = get_settings()
    if database_url:
        os.environ["FIDELIZA_DATABASE_URL"] = database_url
    host, port = host or settings.host, port or settings.port
    console.print(f"serving on http://{host}:{port}  (docs at /docs; Ctrl+C to stop)")
    uvicorn.run(
        "fideliza.api.app:create_app",
        # The app writes its own JSON access line (with the request id); no second plain one.
        access_log=False,
        # Behind a load balancer, FIDELIZA_FORWARDED_ALLOW_IPS names it, so client addresses
        # (and the per-IP limit on failed logins) are the real ones.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        factory=True,
        host=host,
        port=port,
        workers=workers or settings.workers,
    )


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except FidelizaError as error:
        errors.print(f"error: {error}")
        sys.exit(2)


@app.command("report")
def report_command(
    out: Annotated[Path, typer.Option("--out", help="Directory for report.html and report.json.")],
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    transactions: Annotated[
        Path | None,
        typer.Option(
            "--transactions",
            help="Purchases file (CSV or Parquet; for Spark also a directory of normalized "
            "Parquet); without it, the database is read.",
            exists=True,
        ),
    ] = None,
    surveys: Annotated[
        Path | None,
        typer.Option(help="Survey responses (CSV or Parquet).", exists=True, dir_okay=False),
    ] = None,
    lang: Annotated[str, typer.Option("--lang", help="Labels: es, en or it.")] = "es",
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Report up to this date (default: after the last purchase)."),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(help="IANA time zone of the periods (default: the program's, or UTC)."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine", help="Computes on duckdb, or spark (local PySpark, needs Java; files)."
        ),
    ] = "duckdb",
    cost_per_point: Annotated[
        str | None,
        typer.Option(
            "--cost-per-point",
            help="What one point costs in money (e.g. 0.01): adds liability and reward cost.",
        ),
    ] = None,
    redemptions: Annotated[
        Path | None,
        typer.Option(
            help="Captured redemptions (CSV or Parquet; the database has its own).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    clv_horizon_months: Annotated[
        int,
        typer.Option("--clv-horizon-months", help="Months ahead the CLV section values."),
    ] = 12,
    discount_rate: Annotated[
        str,
        typer.Option(
            "--discount-rate", help="Monthly discount rate of the CLV section (0.01 = 1 % a month)."
        ),
    ] = "0.01",
) -> None:
    """Writes the loyalty report: one self-contained HTML page and a JSON of every figure."""
    from fideliza.analytics import open_database, open_files, open_spark
    from fideliza.analytics.lifetime import check_clv_options
    from fideliza.analytics.report import SECTIONS, Lang, build_report

    def refuse(option: str, problem: str) -> NoReturn:
        errors.print(f"[red]error[/red] [bold]{option}[/bold]: {escape(problem)}")
        raise typer.Exit(2)

    if lang not in {choice.value for choice in Lang}:
        refuse("--lang", f"must be es, en or it, got {lang!r}")
    if engine not in ("duckdb", "spark"):
        refuse("--engine", f"must be duckdb or spark, got {engine!r}")
    cost: Decimal | None = None
    if cost_per_point is not None:
        try:
            cost = Decimal(cost_per_point)
        except ArithmeticError:
            cost = None
        if cost is None or not cost.is_finite() or cost <= 0:
            refuse(
                "--cost-per-point", f"must be a positive amount, e.g. 0.01, got {cost_per_point!r}"
            )
    try:
        rate = check_clv_options(clv_horizon_months, discount_rate)
    except ValidationError as error:
        refuse(
            "--clv-horizon-months" if error.field == "months" else "--discount-rate", error.message
        )
    if engine == "spark" and transactions is None:
        refuse("--engine", "spark reads files: give --transactions")

    def work() -> None:
        zone = timezone or "UTC"
        if transactions is not None and engine == "spark":
            data = open_spark(transactions, surveys=surveys, redemptions=redemptions, timezone=zone)
        elif transactions is not None:
            data = open_files(transactions, surveys=surveys, redemptions=redemptions, timezone=zone)
        else:
            data = open_database(
                _url(database_url), program=program, timezone=timezone, surveys=surveys
            )
        with (
            data,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=errors,
            ) as bar,
        ):
            tasks: list[Any] = []

            def advance(section: str) -> None:
                if tasks:
                    bar.update(tasks[-1], completed=1)
                step = f"[{len(tasks) + 1}/{len(SECTIONS)}] {section.replace('_', ' ')}"
                tasks.append(bar.add_task(step, total=1))

            report = build_report(
                data,
                as_of=as_of,
                lang=lang,
                progress=advance,
                cost_per_point=cost,
                clv_months=clv_horizon_months,
                monthly_discount_rate=rate,
            )
            if tasks:
                bar.update(tasks[-1], completed=1)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.html").write_text(report.html, encoding="utf-8")
        (out / "report.json").write_text(report.json(), encoding="utf-8")
        console.print(f"report written to {escape(str(out / 'report.html'))} and report.json")

    _run(work)


@jobs_app.command("webhooks")
def jobs_webhooks(
    database_url: DatabaseOption = None,
    program: Annotated[
        str | None, typer.Option("--program", "-p", help="Only this program.")
    ] = None,
    every: Annotated[
        float, typer.Option(help="Keep running, every this many seconds (0: run once).")
    ] = 0,
) -> None:
    """Delivers outbox events to the programs' webhook endpoints (signed; retried with backoff)."""
    import dataclasses
    import time

    from fideliza.programs import service as programs
    from fideliza.webhooks import service as webhooks

    factory = _factory(database_url)
    settings = webhooks.WebhookSettings()

    def work() -> None:
        program_id = None
        if program:
            with factory() as db:
                program_id = programs.get_by_code(db, code=program).id
        while True:
            report = webhooks.dispatch_due(
                factory,
                now=datetime.now(UTC),
                program_id=program_id,
                allow_private=settings.allow_private_addresses,
            )
            console.print_json(json.dumps(dataclasses.asdict(report)))
            if every <= 0:
                return
            time.sleep(every)

    _run(work)
