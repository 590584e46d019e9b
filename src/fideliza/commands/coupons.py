"""fideliza coupons …: campaigns, bulk code generation, validate, redeem, show (admin), void."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from fideliza.commands import in_program
from fideliza.commands.options import DatabaseOption, NowOption, ProgramOption
from fideliza.core.errors import ValidationError

if TYPE_CHECKING:
    from fideliza.coupons.domain import Basket

app = typer.Typer(no_args_is_help=True, help="Coupon campaigns and codes.")

# The console and helpers live in fideliza.cli, which imports this module: they are
# looked up when a command runs, not at import.
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
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Creates a coupon campaign."""
    from fideliza import cli
    from fideliza.coupons import service as coupons

    def work(db: Session, program_id: int, at: datetime) -> None:
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
        campaign = coupons.create_campaign(
            db,
            program_id=program_id,
            data={k: v for k, v in data.items() if v is not None or k == "max_uses_per_code"},
            now=at,
            actor="cli",
        )
        cli.console.print(f"campaign [bold]{campaign.code}[/bold] created (id {campaign.id})")

    in_program(database_url, program, now, work)


@app.command("list")
def list_campaigns(database_url: DatabaseOption = None, program: ProgramOption = None) -> None:
    """The program's coupon campaigns."""
    from fideliza import cli
    from fideliza.coupons import service as coupons

    def work(db: Session, program_id: int, at: datetime) -> None:
        table = Table("id", "code", "name", "discount", "uses/code", "trigger", "active")
        for campaign in coupons.list_campaigns(db, program_id=program_id):
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

    in_program(database_url, program, None, work, write=False)


@app.command("generate")
def generate(
    campaign: Annotated[str, typer.Argument(help="The campaign's code.")],
    count: Annotated[int, typer.Option(help="How many codes.")],
    out: Annotated[
        Path | None, typer.Option(help="Write the codes here, one a line (default: stdout).")
    ] = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Generates unassigned codes in bulk (a million in seconds), with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from fideliza import cli
    from fideliza.coupons import service as coupons

    if count < 1:
        cli._fail(ValidationError("must be at least 1", field="--count"))

    def work(db: Session, program_id: int, at: datetime) -> list[str]:
        shown: list[str] = []
        with Progress(
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=cli.errors,
        ) as progress:
            task = progress.add_task("generating", total=count)
            target = coupons.get_campaign_by_code(db, program_id=program_id, code=campaign)
            left = count
            while left:  # all or nothing: one transaction, a million codes per call
                step = min(left, coupons.MAX_GENERATE)
                stored = coupons.generate_codes(
                    db,
                    program_id=program_id,
                    campaign_id=target.id,
                    count=step,
                    now=at,
                    actor="cli",
                    on_progress=lambda done: progress.advance(task, done),
                )
                shown.extend(coupons.display(code, target) for code in stored)
                left -= step
        return shown

    shown = in_program(database_url, program, now, work)
    if out is None:
        sys.stdout.write("\n".join(shown) + "\n")
    else:
        out.write_text("\n".join(shown) + "\n", encoding="ascii")
        cli.errors.print(f"{len(shown):,} codes written to {escape(str(out))}")


def _member_id(db: Session, program_id: int, external_id: str | None) -> int | None:
    if external_id is None:
        return None
    from fideliza.members import service as members

    return members.find(db, program_id=program_id, external_id=external_id).id


def _basket(db: Session, program_id: int, amount: str, items: str | None) -> Basket:
    """The basket from the command line, in the program's currency."""
    from fideliza.coupons.domain import parse_basket
    from fideliza.programs import service as programs

    currency = programs.get(db, program_id=program_id).currency
    return parse_basket(amount, currency, _json(items, field="--items", kind=list))


@app.command("validate")
def validate(
    code: Code,
    amount: Amount,
    items: Items = None,
    member: Member = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """What a code would take off a basket, without using it."""
    from fideliza import cli
    from fideliza.coupons import service as coupons

    def work(db: Session, program_id: int, at: datetime) -> None:
        quote = coupons.validate(
            db,
            program_id=program_id,
            code=code,
            basket=_basket(db, program_id, amount, items),
            now=at,
            member_id=_member_id(db, program_id, member),
        )
        cli.console.print(
            f"{quote.code} ({quote.campaign_code}): "
            f"[bold]{quote.discount} {quote.currency}[/bold] off"
        )

    in_program(database_url, program, now, work, write=False)


@app.command("redeem")
def redeem(
    code: Code,
    amount: Amount,
    purchase: Annotated[str | None, typer.Option(help="The till's transaction id.")] = None,
    items: Items = None,
    member: Member = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Uses a code on a purchase (the same code and purchase again replays)."""
    from fideliza import cli
    from fideliza.coupons import service as coupons

    def work(db: Session, program_id: int, at: datetime) -> None:
        done = coupons.redeem(
            db,
            program_id=program_id,
            code=code,
            basket=_basket(db, program_id, amount, items),
            now=at,
            member_id=_member_id(db, program_id, member),
            purchase_external_id=purchase,
        )
        again = " (already redeemed: replayed)" if done.replayed else ""
        cli.console.print(
            f"{done.code}: [bold]{done.discount} {done.currency}[/bold] off, "
            f"redemption {done.redemption_id}{again}"
        )

    in_program(database_url, program, now, work)


@app.command("show")
def show(
    code: Code,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """The exact state of a code (admin): usable, unknown, expired, used_up, voided …"""
    from fideliza import cli
    from fideliza.coupons import service as coupons

    def work(db: Session, program_id: int, at: datetime) -> None:
        state = coupons.inspect(db, program_id=program_id, code=code, now=at)
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

    in_program(database_url, program, now, work, write=False)


@app.command("void")
def void(
    code: Code,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Voids a code (leaked, issued by mistake): refused from now on."""
    from fideliza import cli
    from fideliza.coupons import service as coupons

    def work(db: Session, program_id: int, at: datetime) -> None:
        state = coupons.void_code(db, program_id=program_id, code=code, now=at, actor="cli")
        cli.console.print(f"{state.code}: [bold]{state.state}[/bold]")

    in_program(database_url, program, now, work)
