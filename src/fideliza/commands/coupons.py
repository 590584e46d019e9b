"""fideliza coupons …: campaigns, bulk code generation, validate, redeem, show (admin), void."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from fideliza.core.errors import ValidationError

app = typer.Typer(no_args_is_help=True, help="Coupon campaigns and codes.")

# The shared options and helpers live in fideliza.cli, which imports this module: they are
# looked up when a command runs, not at import.
Database = Annotated[
    str | None,
    typer.Option("--database-url", envvar="FIDELIZA_DATABASE_URL", help="SQLAlchemy URL."),
]
ProgramCode = Annotated[
    str | None, typer.Option("--program", "-p", help="Program code (default: the only one).")
]
Now = Annotated[
    str | None, typer.Option("--now", help="Run as of this ISO 8601 instant (default: the clock).")
]
Code = Annotated[str, typer.Argument(help="The coupon code (dashes, spaces and case ignored).")]
Amount = Annotated[str, typer.Option(help="The basket's amount, e.g. 42.50.")]
Items = Annotated[
    str | None,
    typer.Option(help='Basket lines as JSON: [{"sku":"COF","quantity":2,"unit_price":"2.50"}].'),
]
Member = Annotated[str | None, typer.Option("--member", help="The business's member id.")]


def _json(raw: str | None, *, field: str, kind: type) -> Any:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValidationError("is not valid JSON", field=field) from None
    if not isinstance(value, kind):
        raise ValidationError(f"must be a JSON {kind.__name__}", field=field)
    return value


@app.command("create")
def create(
    code: Annotated[str, typer.Option(help="A short code, unique in the program.")],
    name: Annotated[str, typer.Option(help="What people see.")],
    discount: Annotated[
        str,
        typer.Option(
            help='JSON: {"type":"percent","percent":"10"}, {"type":"fixed","amount":"5"}, '
            '{"type":"free_item","sku":"COF"}, {"type":"buy_x_get_y","skus":["COF"],'
            '"buy":2,"get":1}.'
        ),
    ],
    min_spend: Annotated[str | None, typer.Option(help="Minimum basket, e.g. 20.00.")] = None,
    max_uses: Annotated[int | None, typer.Option(help="Uses per code (default 1).")] = 1,
    unlimited: Annotated[bool, typer.Option(help="Codes with no use limit.")] = False,
    once_per_member: Annotated[bool, typer.Option(help="Each member uses it once.")] = False,
    valid_from: Annotated[str | None, typer.Option("--from", help="ISO 8601 instant.")] = None,
    valid_until: Annotated[str | None, typer.Option("--until", help="ISO 8601 instant.")] = None,
    valid_days: Annotated[int | None, typer.Option(help="Each code lasts N days.")] = None,
    prefix: Annotated[str, typer.Option(help="Code prefix (code alphabet only).")] = "",
    on_purchase: Annotated[
        str | None, typer.Option(help="Next-order coupon: issued by purchases of this amount.")
    ] = None,
    return_policy: Annotated[
        str, typer.Option(help="keep, full_return or any_return.")
    ] = "full_return",
    budget_points: Annotated[int | None, typer.Option(help="Points it may cost a period.")] = None,
    points_per_code: Annotated[int, typer.Option(help="Points each code costs.")] = 0,
    budget_money: Annotated[
        str | None, typer.Option(help="Discounts it may grant a period.")
    ] = None,
    budget_period: Annotated[str, typer.Option(help="total, day, week or month.")] = "total",
    database_url: Database = None,
    program: ProgramCode = None,
    now: Now = None,
) -> None:
    """Creates a coupon campaign."""
    from fideliza import cli
    from fideliza.coupons import service as coupons
    from fideliza.db import unit_of_work
    from fideliza.programs import service as programs

    factory = cli._factory(database_url)

    def work() -> None:
        data: dict[str, Any] = {
            "code": code,
            "name": name,
            "discount": _json(discount, field="--discount", kind=dict),
            "min_spend": min_spend,
            "max_uses_per_code": None if unlimited else max_uses,
            "once_per_member": once_per_member,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "code_valid_days": valid_days,
            "code_prefix": prefix,
            "return_policy": return_policy,
            "budget_points": budget_points,
            "points_per_code": points_per_code,
            "budget_money": budget_money,
            "budget_period": budget_period,
        }
        if on_purchase is not None:
            data.update(trigger="purchase", trigger_min_amount=on_purchase)
        with unit_of_work(factory) as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            campaign = coupons.create_campaign(
                db,
                program_id=found.id,
                data={k: v for k, v in data.items() if v is not None or k == "max_uses_per_code"},
                now=cli._now(now),
                actor="cli",
            )
            cli.console.print(f"campaign [bold]{campaign.code}[/bold] created (id {campaign.id})")

    cli._run(work)


@app.command("list")
def list_campaigns(database_url: Database = None, program: ProgramCode = None) -> None:
    """The program's coupon campaigns."""
    from fideliza import cli
    from fideliza.coupons import service as coupons
    from fideliza.programs import service as programs

    factory = cli._factory(database_url)

    def work() -> None:
        with factory() as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            table = Table("id", "code", "name", "discount", "uses/code", "trigger", "active")
            for campaign in coupons.list_campaigns(db, program_id=found.id):
                table.add_row(
                    str(campaign.id),
                    campaign.code,
                    escape(campaign.name),
                    escape(json.dumps(campaign.discount)),
                    "∞" if campaign.max_uses_per_code is None else str(campaign.max_uses_per_code),
                    campaign.trigger,
                    "yes" if campaign.active else "no",
                )
            cli.console.print(table)

    cli._run(work)


@app.command("generate")
def generate(
    campaign: Annotated[str, typer.Argument(help="The campaign's code.")],
    count: Annotated[int, typer.Option(help="How many codes.")],
    out: Annotated[
        Path | None, typer.Option(help="Write the codes here, one a line (default: stdout).")
    ] = None,
    database_url: Database = None,
    program: ProgramCode = None,
    now: Now = None,
) -> None:
    """Generates unassigned codes in bulk (a million in seconds), with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from fideliza import cli
    from fideliza.coupons import service as coupons
    from fideliza.db import unit_of_work
    from fideliza.programs import service as programs

    if count < 1:
        cli._fail(ValidationError("must be at least 1", field="--count"))
    factory = cli._factory(database_url)

    def work() -> list[str]:
        shown: list[str] = []
        with (
            Progress(
                "{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=cli.errors,
            ) as progress,
            unit_of_work(factory) as db,
        ):
            task = progress.add_task("generating", total=count)
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            target = coupons.get_campaign_by_code(db, program_id=found.id, code=campaign)
            left = count
            while left:  # all or nothing: one transaction, a million codes per call
                step = min(left, coupons.MAX_GENERATE)
                stored = coupons.generate_codes(
                    db,
                    program_id=found.id,
                    campaign_id=target.id,
                    count=step,
                    now=cli._now(now),
                    actor="cli",
                    on_progress=lambda done: progress.advance(task, done),
                )
                shown.extend(coupons.display(code, target) for code in stored)
                left -= step
        return shown

    shown = cli._run(work)
    if out is None:
        sys.stdout.write("\n".join(shown) + "\n")
    else:
        out.write_text("\n".join(shown) + "\n", encoding="ascii")
        cli.errors.print(f"{len(shown):,} codes written to {escape(str(out))}")


def _member_id(db: Any, program_id: int, external_id: str | None) -> int | None:
    if external_id is None:
        return None
    from fideliza.members import service as members

    return members.find(db, program_id=program_id, external_id=external_id).id


@app.command("validate")
def validate(
    code: Code,
    amount: Amount,
    items: Items = None,
    member: Member = None,
    database_url: Database = None,
    program: ProgramCode = None,
    now: Now = None,
) -> None:
    """What a code would take off a basket, without using it."""
    from fideliza import cli
    from fideliza.coupons import service as coupons
    from fideliza.coupons.domain import parse_basket
    from fideliza.programs import service as programs

    factory = cli._factory(database_url)

    def work() -> None:
        with factory() as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            basket = parse_basket(amount, found.currency, _json(items, field="--items", kind=list))
            quote = coupons.validate(
                db,
                program_id=found.id,
                code=code,
                basket=basket,
                now=cli._now(now),
                member_id=_member_id(db, found.id, member),
            )
            cli.console.print(
                f"{quote.code} ({quote.campaign_code}): "
                f"[bold]{quote.discount} {quote.currency}[/bold] off"
            )

    cli._run(work)


@app.command("redeem")
def redeem(
    code: Code,
    amount: Amount,
    purchase: Annotated[str | None, typer.Option(help="The till's transaction id.")] = None,
    items: Items = None,
    member: Member = None,
    database_url: Database = None,
    program: ProgramCode = None,
    now: Now = None,
) -> None:
    """Uses a code on a purchase (the same code and purchase again replays)."""
    from fideliza import cli
    from fideliza.coupons import service as coupons
    from fideliza.coupons.domain import parse_basket
    from fideliza.db import unit_of_work
    from fideliza.programs import service as programs

    factory = cli._factory(database_url)

    def work() -> None:
        with unit_of_work(factory) as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            basket = parse_basket(amount, found.currency, _json(items, field="--items", kind=list))
            done = coupons.redeem(
                db,
                program_id=found.id,
                code=code,
                basket=basket,
                now=cli._now(now),
                member_id=_member_id(db, found.id, member),
                purchase_external_id=purchase,
            )
            again = " (already redeemed: replayed)" if done.replayed else ""
            cli.console.print(
                f"{done.code}: [bold]{done.discount} {done.currency}[/bold] off, "
                f"redemption {done.redemption_id}{again}"
            )

    cli._run(work)


@app.command("show")
def show(
    code: Code,
    database_url: Database = None,
    program: ProgramCode = None,
    now: Now = None,
) -> None:
    """The exact state of a code (admin): usable, unknown, expired, used_up, voided …"""
    from fideliza import cli
    from fideliza.coupons import service as coupons
    from fideliza.programs import service as programs

    factory = cli._factory(database_url)

    def work() -> None:
        with factory() as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            state = coupons.inspect(db, program_id=found.id, code=code, now=cli._now(now))
            cli.console.print(f"{state.code}: [bold]{state.state}[/bold]")
            if not state.found:
                return
            uses = "∞" if state.max_uses is None else str(state.max_uses)
            cli.console.print(
                f"campaign {state.campaign_code}, uses {state.uses}/{uses}, "
                f"member {state.member_id or '-'}, valid {state.valid_from or '-'} → "
                f"{state.valid_until or '-'}, source {state.source}"
            )
            for line in state.redemptions:
                restored = f", restored {line['restored_at']}" if line["restored_at"] else ""
                cli.console.print(
                    f"  redeemed {line['redeemed_at']} on {line['purchase'] or '-'}: "
                    f"{line['discount']}{restored}"
                )

    cli._run(work)


@app.command("void")
def void(
    code: Code,
    database_url: Database = None,
    program: ProgramCode = None,
    now: Now = None,
) -> None:
    """Voids a code (leaked, issued by mistake): refused from now on."""
    from fideliza import cli
    from fideliza.coupons import service as coupons
    from fideliza.db import unit_of_work
    from fideliza.programs import service as programs

    factory = cli._factory(database_url)

    def work() -> None:
        with unit_of_work(factory) as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            state = coupons.void_code(
                db, program_id=found.id, code=code, now=cli._now(now), actor="cli"
            )
            cli.console.print(f"{state.code}: [bold]{state.state}[/bold]")

    cli._run(work)
