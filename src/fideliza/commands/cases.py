"""fideliza cases …: open, assign, move, resolve (with a gesture), reopen, note, show, list, sla,
flag-breaches; and the member timeline (`fideliza cases timeline MEMBER`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from fideliza.commands import in_program
from fideliza.commands.options import DatabaseOption, NowOption, ProgramOption

if TYPE_CHECKING:
    from fideliza.cases.models import Case

app = typer.Typer(no_args_is_help=True, help="Complaints (cases) from open to resolution.")
console = Console()

ActorOption = Annotated[str, typer.Option("--actor", help="Who does this (for the history).")]
CaseArgument = Annotated[int, typer.Argument(help="The case id.", min=1)]
NoteOption = Annotated[str | None, typer.Option("--note", help="A note for the history.")]


def _member_id(db: Session, program_id: int, external_id: str) -> int:
    from fideliza.members import service as members

    return members.find(db, program_id=program_id, external_id=external_id).id


def _sla_text(case: Case, now: datetime) -> str:
    from fideliza.cases import service as cases

    status = cases.status_of(case, now=now)
    missed = [name for name, late in [("response", status.response),
              ("resolution", status.resolution)] if late]  # fmt: skip
    return "[red]breached: " + ", ".join(missed) + "[/red]" if missed else "[green]on time[/green]"


@app.command("open")
def open_case(
    member: Annotated[str, typer.Argument(help="The member's external id.")],
    subject: Annotated[str, typer.Option("--subject", help="What went wrong, in a line.")],
    category: Annotated[str, typer.Option(help="product, service, billing, points, …")] = "other",
    channel: Annotated[str, typer.Option(help="store, phone, email, web, app, …")] = "store",
    severity: Annotated[str, typer.Option(help="low, medium, high or critical.")] = "medium",
    description: Annotated[str | None, typer.Option(help="The member's words.")] = None,
    purchase: Annotated[
        str | None, typer.Option("--purchase", help="The till's id of the purchase concerned.")
    ] = None,
    by_member: Annotated[
        bool, typer.Option("--by-member", help="The member opened it (not staff).")
    ] = False,
    assignee: Annotated[str | None, typer.Option(help="Who handles it.")] = None,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Opens a case; its SLA deadlines follow from its severity."""
    from fideliza.cases import service as cases
    from fideliza.purchases import service as purchases

    def work(db: Session, program_id: int, at: datetime) -> None:
        purchase_id = (
            purchases.get_purchase(db, program_id=program_id, external_id=purchase).id
            if purchase
            else None
        )
        case = cases.open_case(
            db,
            program_id=program_id,
            member_id=_member_id(db, program_id, member),
            category=category,
            channel=channel,
            severity=severity,
            subject=subject,
            description=description,
            purchase_id=purchase_id,
            opened_by="member" if by_member else "staff",
            assignee=assignee,
            actor=actor,
            now=at,
        )
        console.print(
            f"[green]✓[/green] case [bold]{case.id}[/bold] opened ({case.severity}); "
            f"respond by {case.response_due_at:%Y-%m-%d %H:%M}Z, "
            f"resolve by {case.resolution_due_at:%Y-%m-%d %H:%M}Z"
        )

    in_program(database_url, program, now, work)


@app.command("assign")
def assign(
    case_id: CaseArgument,
    assignee: Annotated[str, typer.Argument(help="Who handles it ('-' to unassign).")],
    note: NoteOption = None,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Gives a case to someone."""
    from fideliza.cases import service as cases

    def work(db: Session, program_id: int, at: datetime) -> None:
        owner = None if assignee == "-" else assignee
        cases.assign(
            db, program_id=program_id, case_id=case_id, assignee=owner, note=note, actor=actor,
            now=at,
        )  # fmt: skip
        console.print(f"[green]✓[/green] case {case_id} assigned to {owner or 'nobody'}")

    in_program(database_url, program, now, work)


@app.command("move")
def move(
    case_id: CaseArgument,
    state: Annotated[str, typer.Argument(help="in_progress or closed.")],
    note: NoteOption = None,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Moves a case to in_progress or closed (resolve and reopen have their own commands)."""
    from fideliza.cases import service as cases

    def work(db: Session, program_id: int, at: datetime) -> None:
        case = cases.move(
            db, program_id=program_id, case_id=case_id, to_state=state, note=note, actor=actor,
            now=at,
        )  # fmt: skip
        console.print(f"[green]✓[/green] case {case.id} is {case.state}")

    in_program(database_url, program, now, work)


@app.command("resolve")
def resolve(
    case_id: CaseArgument,
    resolution: Annotated[str, typer.Option("--resolution", help="What was done.")],
    apologized: Annotated[bool, typer.Option("--apologized", help="We apologized.")] = False,
    called_back: Annotated[
        str | None, typer.Option("--called-back", help="When we called back (ISO 8601).")
    ] = None,
    goodwill: Annotated[
        int | None, typer.Option("--goodwill", help="Goodwill points (once per case).")
    ] = None,
    coupon_campaign: Annotated[
        int | None, typer.Option("--coupon-campaign", help="Issue a code of this campaign.")
    ] = None,
    refund: Annotated[str | None, typer.Option("--refund", help="A refund reference.")] = None,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Resolves a case, with an optional recovery gesture; invites to the follow-up survey."""
    from fideliza.cases import service as cases
    from fideliza.cases.domain import parse_gesture
    from fideliza.core.clock import parse_timestamp
    from fideliza.programs import service as programs

    def work(db: Session, program_id: int, at: datetime) -> None:
        parsed = cases.parse_resolution(
            summary=resolution,
            apologized=apologized,
            called_back_at=parse_timestamp(called_back, field="--called-back")
            if called_back
            else None,
            gesture=parse_gesture(
                goodwill_points=goodwill,
                coupon_campaign_id=coupon_campaign,
                refund_reference=refund,
            ),
            now=at,
        )
        case = cases.resolve(
            db,
            program=programs.get(db, program_id=program_id),
            case_id=case_id,
            resolution=parsed,
            actor=actor,
            now=at,
        )
        gave = [
            f"{case.goodwill_points} goodwill points" if goodwill else "",
            f"coupon {case.coupon_code}" if coupon_campaign else "",
            f"refund {case.refund_reference}" if refund else "",
        ]
        given = ", ".join(g for g in gave if g)
        console.print(
            f"[green]✓[/green] case {case.id} resolved"
            + (f"; gave {escape(given)}" if given else "")
            + f"; {case.survey_invitations} survey invitation(s)"
        )

    in_program(database_url, program, now, work)


@app.command("reopen")
def reopen(
    case_id: CaseArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why the case is not settled.")],
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Reopens a resolved or closed case."""
    from fideliza.cases import service as cases

    def work(db: Session, program_id: int, at: datetime) -> None:
        case = cases.reopen(
            db, program_id=program_id, case_id=case_id, reason=reason, actor=actor, now=at
        )
        console.print(f"[green]✓[/green] case {case.id} reopened ({case.reopen_count} time(s))")

    in_program(database_url, program, now, work)


@app.command("note")
def note(
    case_id: CaseArgument,
    text: Annotated[str, typer.Argument(help="The note.")],
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Adds an internal note to a case's history."""
    from fideliza.cases import service as cases

    def work(db: Session, program_id: int, at: datetime) -> None:
        cases.add_note(db, program_id=program_id, case_id=case_id, note=text, actor=actor, now=at)
        console.print(f"[green]✓[/green] note added to case {case_id}")

    in_program(database_url, program, now, work)


@app.command("show")
def show(
    case_id: CaseArgument,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Shows a case, its SLA status and its history."""
    from fideliza.cases import service as cases

    def work(db: Session, program_id: int, at: datetime) -> None:
        case = cases.get(db, program_id=program_id, case_id=case_id)
        console.print(
            f"[bold]case {case.id}[/bold]: {escape(case.subject)} — {case.state}, "
            f"{case.severity} {case.category} via {case.channel}, "
            f"member {case.member_id}, assignee {escape(case.assignee or '-')}"
        )
        console.print(
            f"SLA: {_sla_text(case, at)} (respond by {case.response_due_at:%Y-%m-%d %H:%M}Z, "
            f"resolve by {case.resolution_due_at:%Y-%m-%d %H:%M}Z)"
        )
        if case.resolution:
            console.print(
                f"resolution: {escape(case.resolution)} (apologized: "
                f"{'yes' if case.apologized else 'no'}, called back: "
                f"{case.called_back_at or 'no'})"
            )
        table = Table("at", "event", "from", "to", "by", "note")
        for event in cases.history(db, program_id=program_id, case_id=case_id):
            table.add_row(
                f"{event.at:%Y-%m-%d %H:%M}",
                event.kind,
                event.from_state or "",
                event.to_state or "",
                escape(event.actor or ""),
                escape(event.note or ""),
            )
        console.print(table)

    in_program(database_url, program, now, work, write=False)


@app.command("list")
def list_cases(
    state: Annotated[str | None, typer.Option(help="Only this state.")] = None,
    severity: Annotated[str | None, typer.Option(help="Only this severity.")] = None,
    assignee: Annotated[str | None, typer.Option(help="Only this assignee.")] = None,
    breached: Annotated[
        bool | None, typer.Option("--breached/--on-time", help="Only breached (or on time).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Lists cases, newest first, with their SLA status."""
    from fideliza.cases import service as cases

    def work(db: Session, program_id: int, at: datetime) -> None:
        where = cases.parse_filter(
            state=state, severity=severity, assignee=assignee, breached=breached
        )
        table = Table("id", "opened", "state", "severity", "category", "assignee", "SLA", "subject")
        for case in cases.list_cases(db, program_id=program_id, now=at, where=where, limit=limit):
            table.add_row(
                str(case.id),
                f"{case.opened_at:%Y-%m-%d %H:%M}",
                case.state,
                case.severity,
                case.category,
                escape(case.assignee or "-"),
                _sla_text(case, at),
                escape(case.subject),
            )
        console.print(table)

    in_program(database_url, program, now, work, write=False)


@app.command("sla")
def sla(
    severity: Annotated[str, typer.Argument(help="low, medium, high or critical.")],
    respond_minutes: Annotated[int, typer.Option("--respond-minutes", help="First response.")],
    resolve_minutes: Annotated[int, typer.Option("--resolve-minutes", help="Resolution.")],
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Sets the program's SLA for a severity (for cases opened from now on)."""
    from fideliza.cases import service as cases

    def work(db: Session, program_id: int, at: datetime) -> None:
        cases.set_sla(
            db, program_id=program_id, severity=severity, first_response_minutes=respond_minutes,
            resolution_minutes=resolve_minutes, actor=actor, now=at,
        )  # fmt: skip
        console.print(
            f"[green]✓[/green] {severity}: respond within {respond_minutes} min, "
            f"resolve within {resolve_minutes} min"
        )

    in_program(database_url, program, now, work)


@app.command("flag-breaches")
def flag_breaches(
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Records the SLA breaches due by now, once each (history line and webhook)."""
    from fideliza.cases import service as cases

    def work(db: Session, program_id: int, at: datetime) -> None:
        count = cases.flag_breaches(db, program_id=program_id, now=at)
        console.print(f"[green]✓[/green] {count} breach(es) recorded")

    in_program(database_url, program, now, work)


@app.command("timeline")
def timeline(
    member: Annotated[str, typer.Argument(help="The member's external id.")],
    kinds: Annotated[
        list[str] | None, typer.Option("--kind", help="Only these kinds (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    before: Annotated[str | None, typer.Option(help="The cursor a previous page printed.")] = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
) -> None:
    """A member's timeline: purchases, returns, points, redemptions, surveys and cases."""
    from fideliza.timeline import service as timeline_service

    def work(db: Session, program_id: int, _at: datetime) -> None:
        page = timeline_service.member_timeline(
            db,
            program_id=program_id,
            member_id=_member_id(db, program_id, member),
            before=before,
            limit=limit,
            kinds=kinds or None,
        )
        table = Table("at", "kind", "points", "what")
        for item in page.items:
            table.add_row(
                f"{item.at:%Y-%m-%d %H:%M}",
                item.kind,
                "" if item.points is None else f"{item.points:+d}",
                escape(item.summary),
            )
        console.print(table)
        if page.next_cursor:
            console.print(f"more: --before {page.next_cursor}")

    in_program(database_url, program, None, work, write=False)
