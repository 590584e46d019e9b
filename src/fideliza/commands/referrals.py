"""fideliza referrals … (codes, enrolment with a code, payouts) and fideliza lifecycle …"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from fideliza.commands import in_program
from fideliza.commands.options import DatabaseOption, NowOption, ProgramOption
from fideliza.core.errors import ValidationError

app = typer.Typer(no_args_is_help=True, help="Referrals and lifecycle bonuses.")
lifecycle_app = typer.Typer(
    no_args_is_help=True, help="Welcome, birthday, anniversary and appreciation-day bonuses."
)

# The console and helpers live in fideliza.cli, which imports this module: they are
# looked up when a command runs, not at import.
MemberId = Annotated[str, typer.Option("--id", help="The business's member id.")]
ConfigText = Annotated[
    str,
    typer.Option("--config", help="The configuration as JSON, or @path to a JSON file."),
]


def _config(raw: str) -> dict[str, Any]:
    """The JSON object given inline or as @path."""
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise ValidationError(f"cannot be read: {error.strerror}", field="--config") from None
    try:
        value = json.loads(text)
    except ValueError:
        raise ValidationError("is not valid JSON", field="--config") from None
    if not isinstance(value, dict):
        raise ValidationError("must be a JSON object", field="--config")
    return value


@app.command("configure")
def configure(
    config: ConfigText,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Sets who gets what and when, e.g. '{"trigger": "first_purchase", "referrer_points": 500}'."""
    from fideliza import cli
    from fideliza.programs import service as programs
    from fideliza.referrals import service as referrals

    def work(db: Session, program_id: int, at: datetime) -> None:
        data = _config(config)
        found = programs.get(db, program_id=program_id)
        saved = referrals.configure(db, program=found, config=data, now=at, actor="cli")
        cli.console.print_json(saved.model_dump_json())

    in_program(database_url, program, now, work)


@app.command("code")
def code(
    external_id: MemberId,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Shows a member's referral code (created the first time)."""
    from fideliza import cli
    from fideliza.members import service as members
    from fideliza.programs import service as programs
    from fideliza.referrals import service as referrals

    def work(db: Session, program_id: int, at: datetime) -> None:
        found = programs.get(db, program_id=program_id)
        member = members.find(db, program_id=program_id, external_id=external_id)
        value = referrals.code_for(db, program=found, member=member, now=at)
        cli.console.print(referrals.display(value))

    in_program(database_url, program, now, work)


@app.command("enrol")
def enrol(
    referral_code: Annotated[str, typer.Option("--code", help="The referrer's code.")],
    external_id: MemberId,
    first_name: Annotated[str | None, typer.Option(help="First name.")] = None,
    last_name: Annotated[str | None, typer.Option(help="Last name.")] = None,
    email: Annotated[str | None, typer.Option(help="E-mail.")] = None,
    phone: Annotated[str | None, typer.Option(help="Phone.")] = None,
    birthday: Annotated[str | None, typer.Option(help="YYYY-MM-DD.")] = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Enrols a new member with a referral code (refused, with nothing written, if it is bad)."""
    from fideliza import cli
    from fideliza.programs import service as programs
    from fideliza.referrals import service as referrals

    def work(db: Session, program_id: int, at: datetime) -> None:
        profile = {
            "external_id": external_id,
            "first_name": first_name,
            "last_name": last_name,
            "email": email,
            "phone": phone,
            "birthday": birthday,
        }
        found = programs.get(db, program_id=program_id)
        member, referral, created = referrals.enrol_with_referral(
            db,
            program=found,
            data={k: v for k, v in profile.items() if v is not None},
            referral_code=referral_code,
            now=at,
        )
        verb = "enrolled" if created else "was already enrolled"
        reason = f" ({referral.reject_reason})" if referral.reject_reason else ""
        cli.console.print(
            f"member {member.external_id} {verb}; referral {referral.id} {referral.state}{reason}"
        )

    in_program(database_url, program, now, work)


@app.command("list")
def list_referrals(
    external_id: Annotated[
        str | None, typer.Option("--id", help="Only this member's referrals.")
    ] = None,
    state: Annotated[
        str | None, typer.Option(help="pending, qualified, rewarded or rejected.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many to show.")] = 100,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
) -> None:
    """Lists referrals, oldest first."""
    from sqlalchemy import select

    from fideliza import cli
    from fideliza.members import service as members
    from fideliza.members.models import Member
    from fideliza.referrals import service as referrals

    def work(db: Session, program_id: int, at: datetime) -> None:
        member_id = (
            members.find(db, program_id=program_id, external_id=external_id).id
            if external_id
            else None
        )
        rows = referrals.list_referrals(
            db, program_id=program_id, member_id=member_id, state=state, limit=limit
        )
        ids = {r.referrer_member_id for r in rows} | {r.referred_member_id for r in rows}
        names = {
            member_id: external
            for member_id, external in db.execute(
                select(Member.id, Member.external_id).where(Member.id.in_(ids))
            )
        }
        table = Table("id", "referrer", "referred", "state", "linked", "due", "points")
        for r in rows:
            table.add_row(
                str(r.id),
                names.get(r.referrer_member_id, "?"),
                names.get(r.referred_member_id, "?"),
                r.state + (f" ({r.reject_reason})" if r.reject_reason else ""),
                f"{r.linked_at:%Y-%m-%d}",
                f"{r.due_at:%Y-%m-%d}" if r.due_at else "-",
                f"{r.referrer_points}+{r.referred_points}" if r.rewarded_at else "-",
            )
        cli.console.print(table)

    in_program(database_url, program, None, work, write=False)


@app.command("pay-due")
def pay_due(
    database_url: DatabaseOption = None, program: ProgramOption = None, now: NowOption = None
) -> None:
    """Pays the referral rewards now due (safe to run twice, and by several workers)."""
    from fideliza import cli
    from fideliza.referrals import service as referrals

    def work(db: Session, program_id: int, at: datetime) -> None:
        paid = referrals.pay_due(db, program_id=program_id, now=at)
        cli.console.print(f"{paid} referrals rewarded")

    in_program(database_url, program, now, work)


@lifecycle_app.command("configure")
def lifecycle_configure(
    config: ConfigText,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Sets the bonuses, e.g. '{"welcome_points": 100, "birthday": {"points": 200}}'."""
    from fideliza import cli
    from fideliza.lifecycle import service as lifecycle
    from fideliza.programs import service as programs

    def work(db: Session, program_id: int, at: datetime) -> None:
        data = _config(config)
        found = programs.get(db, program_id=program_id)
        saved = lifecycle.configure(db, program=found, config=data, now=at, actor="cli")
        cli.console.print_json(saved.model_dump_json())

    in_program(database_url, program, now, work)


@lifecycle_app.command("run")
def lifecycle_run(
    database_url: DatabaseOption = None, program: ProgramOption = None, now: NowOption = None
) -> None:
    """Grants the bonuses now due (idempotent per period; safe with several workers)."""
    from fideliza import cli
    from fideliza.lifecycle import service as lifecycle

    def work(db: Session, program_id: int, at: datetime) -> None:
        counts = lifecycle.run_due(db, program_id=program_id, now=at)
        cli.console.print_json(json.dumps(counts))

    in_program(database_url, program, now, work)
