"""fideliza rewards …: the catalog, a member's view of it, and redemptions."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from fideliza.commands import in_program
from fideliza.commands.options import DatabaseOption, NowOption, ProgramOption
from fideliza.core.errors import ValidationError

app = typer.Typer(no_args_is_help=True, help="Rewards catalog and redemptions.")

# The console and helpers live in fideliza.cli, which imports this module: they are
# looked up when a command runs, not at import.
MemberId = Annotated[str, typer.Option("--id", help="The business's member id.")]


def _tier_costs(pairs: list[str]) -> dict[str, int]:
    costs: dict[str, int] = {}
    for pair in pairs:
        tier, _, points = pair.partition("=")
        if not tier or not points.strip().isdigit():
            raise ValidationError(f"must be TIER=POINTS, got {pair!r}", field="--tier-cost")
        costs[tier] = int(points)
    return costs


def _json_object(raw: str | None, *, field: str) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValidationError("is not valid JSON", field=field) from None
    if not isinstance(value, dict):
        raise ValidationError("must be a JSON object", field=field)
    return value


@app.command("add")
def add(
    code: Annotated[str, typer.Option(help="A short code, unique in the program.")],
    name: Annotated[str, typer.Option(help="What members see.")],
    kind: Annotated[str, typer.Option(help="gift, discount, experience, cashback or charity.")],
    points: Annotated[int, typer.Option(help="The points it costs (the base price).")],
    stock: Annotated[int | None, typer.Option(help="Units available (default: unlimited).")] = None,
    value: Annotated[
        str | None, typer.Option(help="Money it gives (cashback, charity), e.g. 5.00.")
    ] = None,
    campaign_id: Annotated[
        int | None, typer.Option(help="Coupon campaign a discount issues codes of.")
    ] = None,
    tier_cost: Annotated[
        list[str] | None, typer.Option(help="A tier's price, TIER=POINTS (repeatable).")
    ] = None,
    tier: Annotated[
        list[str] | None, typer.Option(help="Only members of this tier (repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Redemptions per member per period.")] = None,
    limit_period: Annotated[str, typer.Option(help="day, week, month, year or ever.")] = "ever",
    available_from: Annotated[str | None, typer.Option("--from", help="ISO 8601 instant.")] = None,
    available_until: Annotated[
        str | None, typer.Option("--until", help="ISO 8601 instant.")
    ] = None,
    budget_points: Annotated[
        int | None, typer.Option(help="Points it may cost in a period.")
    ] = None,
    budget_money: Annotated[str | None, typer.Option(help="Money it may give in a period.")] = None,
    budget_period: Annotated[str, typer.Option(help="day, week, month, year or ever.")] = "ever",
    description: Annotated[str | None, typer.Option(help="A longer text.")] = None,
    attributes: Annotated[
        str | None, typer.Option(help='JSON object, e.g. \'{"date": "2025-04-02"}\'.')
    ] = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Adds a reward to the catalog."""
    from fideliza import cli
    from fideliza.programs import service as programs
    from fideliza.rewards import service as rewards

    def work(db: Session, program_id: int, at: datetime) -> None:
        data: dict[str, Any] = {
            "code": code,
            "name": name,
            "kind": kind,
            "points_cost": points,
            "stock": stock,
            "value": value,
            "campaign_id": campaign_id,
            "tier_costs": _tier_costs(tier_cost or []),
            "eligible_tiers": tier or [],
            "limit_per_member": limit,
            "limit_period": limit_period,
            "available_from": available_from,
            "available_until": available_until,
            "budget_points": budget_points,
            "budget_money": budget_money,
            "budget_period": budget_period,
            "description": description,
            "attributes": _json_object(attributes, field="--attributes"),
        }
        found = programs.get(db, program_id=program_id)
        reward = rewards.create_reward(
            db,
            program=found,
            data={k: v for k, v in data.items() if v is not None},
            now=at,
            actor="cli",
        )
        cli.console.print(f"reward [bold]{reward.code}[/bold] added (id {reward.id})")

    in_program(database_url, program, now, work)


@app.command("list")
def list_catalog(database_url: DatabaseOption = None, program: ProgramOption = None) -> None:
    """The program's catalog."""
    from fideliza import cli
    from fideliza.programs import service as programs
    from fideliza.rewards import service as rewards

    def work(db: Session, program_id: int, at: datetime) -> None:
        found = programs.get(db, program_id=program_id)
        table = Table("id", "code", "name", "kind", "points", "stock", "limits", "active")
        for reward in rewards.list_rewards(db, program_id=program_id):
            limits = []
            if reward.limit_per_member is not None:
                limits.append(f"{reward.limit_per_member}/member/{reward.limit_period}")
            if reward.budget_points is not None:
                limits.append(f"{reward.budget_points} pts/{reward.budget_period}")
            if reward.budget_money is not None:
                limits.append(f"{reward.budget_money} {found.currency}/{reward.budget_period}")
            table.add_row(
                str(reward.id),
                reward.code,
                escape(reward.name),
                reward.kind,
                str(reward.points_cost),
                "∞" if reward.stock is None else str(reward.stock),
                ", ".join(limits) or "-",
                "yes" if reward.active else "no",
            )
        cli.console.print(table)

    in_program(database_url, program, None, work, write=False)


@app.command("catalog")
def catalog(
    external_id: MemberId,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """What a member can afford and redeem now, and how far the next reward is."""
    from fideliza import cli
    from fideliza.members import service as members
    from fideliza.programs import service as programs
    from fideliza.rewards import service as rewards

    def work(db: Session, program_id: int, at: datetime) -> None:
        found = programs.get(db, program_id=program_id)
        member = members.find(db, program_id=program_id, external_id=external_id)
        view = rewards.member_catalog(db, program=found, member_id=member.id, now=at)
        cli.console.print(
            f"{escape(external_id)}: [bold]{view.points_available}[/bold] "
            f"{found.points_name} available; tier {view.tier_code or '-'}"
        )
        table = Table("code", "name", "points", "affordable", "eligible", "missing")
        for entry in view.rewards:
            table.add_row(
                entry.reward.code,
                escape(entry.reward.name),
                str(entry.points_cost),
                "yes" if entry.affordable else "no",
                "yes" if entry.eligible else f"no: {escape(entry.reason or '')}",
                str(entry.points_missing),
            )
        cli.console.print(table)
        if view.next_reward is not None:
            cli.console.print(
                f"next reward: [bold]{escape(view.next_reward.reward.name)}[/bold], "
                f"{view.next_reward.points_missing} {found.points_name} away"
            )

    in_program(database_url, program, now, work, write=False)


@app.command("redeem")
def redeem(
    reward: Annotated[str, typer.Argument(help="The reward's code (or id).")],
    external_id: MemberId,
    reference: Annotated[
        str, typer.Option(help="Your id of this redemption: a retry with it redeems once.")
    ],
    capture: Annotated[bool, typer.Option("--capture", help="Capture at once (one step).")] = False,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Holds a reward's points and stock for a member (and captures it with --capture)."""
    from fideliza import cli
    from fideliza.members import service as members
    from fideliza.programs import service as programs
    from fideliza.rewards import service as rewards

    def work(db: Session, program_id: int, at: datetime) -> None:
        found = programs.get(db, program_id=program_id)
        member = members.find(db, program_id=program_id, external_id=external_id)
        chosen = rewards.find_reward(db, program_id=program_id, ref=reward)
        redemption, created = rewards.redeem(
            db,
            program=found,
            member_id=member.id,
            reward_id=chosen.id,
            reference=reference,
            now=at,
            actor="cli",
        )
        if capture and redemption.status == "held":
            rewards.capture(db, program=found, redemption_id=redemption.id, now=at, actor="cli")
        _show(cli, redemption, replayed=not created)

    in_program(database_url, program, now, work)


@app.command("capture")
def capture(
    redemption_id: Annotated[int, typer.Argument(help="The redemption's id.")],
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Captures a held redemption: points spent, reward fulfilled."""
    _settle("capture", redemption_id, database_url, program, now)


@app.command("release")
def release(
    redemption_id: Annotated[int, typer.Argument(help="The redemption's id.")],
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Releases a held redemption: points, stock and budget go back."""
    _settle("release", redemption_id, database_url, program, now)


def _settle(
    action: str, redemption_id: int, database_url: str | None, program: str | None, now: str | None
) -> None:
    from fideliza import cli
    from fideliza.programs import service as programs
    from fideliza.rewards import service as rewards

    settle = rewards.capture if action == "capture" else rewards.release

    def work(db: Session, program_id: int, at: datetime) -> None:
        found = programs.get(db, program_id=program_id)
        redemption = settle(db, program=found, redemption_id=redemption_id, now=at, actor="cli")
        _show(cli, redemption, replayed=False)

    in_program(database_url, program, now, work)


def _show(cli: Any, redemption: Any, *, replayed: bool) -> None:
    again = " (already redeemed with this reference)" if replayed else ""
    cli.console.print(
        f"redemption [bold]{redemption.id}[/bold] {redemption.status}: "
        f"{redemption.points} points, expires {redemption.expires_at:%Y-%m-%d %H:%M} UTC{again}"
    )
    for name, value in redemption.fulfilment.items():
        cli.console.print(f"  {name}: {escape(str(value))}")
