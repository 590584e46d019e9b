"""fideliza messages …: templates (set, list, preview), configuration, triggers run, dispatch and
a member's send log."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from fideliza.commands import in_program
from fideliza.commands.options import DatabaseOption, NowOption, ProgramOption
from fideliza.core.errors import FidelizaError, ValidationError

app = typer.Typer(no_args_is_help=True, help="Personal messages: templates, triggers, sends.")
templates_app = typer.Typer(no_args_is_help=True, help="Message templates (Jinja2, per language).")
triggers_app = typer.Typer(no_args_is_help=True, help="Birthday, expiring points, win-back …")
app.add_typer(templates_app, name="templates")
app.add_typer(triggers_app, name="triggers")
console = Console()

KindArgument = Annotated[str, typer.Argument(help="welcome, birthday, tier_up, win_back …")]
ChannelOption = Annotated[str, typer.Option("--channel", help="email, sms or push.")]
LocaleOption = Annotated[str, typer.Option("--locale", help="es, en or it.")]


def _read(path: Path | None, *, field: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValidationError(f"cannot be read: {error}", field=field) from None


@templates_app.command("set")
def templates_set(
    kind: KindArgument,
    text_file: Annotated[Path, typer.Option("--text", help="The text body (a Jinja2 file).")],
    channel: ChannelOption = "email",
    locale: LocaleOption = "es",
    subject: Annotated[
        str | None, typer.Option("--subject", help="The subject (required for e-mail).")
    ] = None,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="An optional HTML body (a Jinja2 file).")
    ] = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Saves a template (checked now by rendering it with sample data)."""
    from fideliza.messaging import service as messaging

    def work(db: Session, program_id: int, at: datetime) -> None:
        body_text = _read(text_file, field="--text") or ""
        body_html = _read(html_file, field="--html")
        row = messaging.set_template(
            db,
            program_id=program_id,
            kind=kind,
            channel=channel,
            locale=locale,
            subject=subject,
            body_text=body_text,
            body_html=body_html,
            now=at,
            actor="cli",
        )
        console.print(f"saved template {row.kind}/{row.channel}/{row.locale}")

    in_program(database_url, program, now, work)


@templates_app.command("list")
def templates_list(database_url: DatabaseOption = None, program: ProgramOption = None) -> None:
    """The program's templates."""
    from fideliza.messaging import service as messaging

    def work(db: Session, program_id: int, _at: datetime) -> None:
        table = Table("kind", "channel", "locale", "subject", "html", "updated")
        for row in messaging.list_templates(db, program_id=program_id):
            table.add_row(
                row.kind,
                row.channel,
                row.locale,
                escape(row.subject or ""),
                "yes" if row.body_html else "",
                row.updated_at.isoformat(timespec="seconds"),
            )
        console.print(table)

    in_program(database_url, program, None, work, write=False)


@templates_app.command("preview")
def templates_preview(
    kind: KindArgument,
    channel: ChannelOption = "email",
    locale: LocaleOption = "es",
    member: Annotated[
        str | None, typer.Option("--member", help="A member's external id (default: samples).")
    ] = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
) -> None:
    """Renders a saved template with sample data, or with a member's details."""
    from fideliza.members import service as members
    from fideliza.messaging import service as messaging

    def work(db: Session, program_id: int, _at: datetime) -> None:
        member_id = None
        if member:
            member_id = members.find(db, program_id=program_id, external_id=member).id
        out = messaging.preview(
            db,
            program_id=program_id,
            kind=kind,
            channel=channel,
            locale=locale,
            member_id=member_id,
        )
        if out.subject is not None:
            console.print(f"[bold]Subject:[/bold] {escape(out.subject)}")
        console.print(escape(out.body_text), highlight=False)
        if out.body_html is not None:
            console.print("[bold]HTML:[/bold]")
            console.print(escape(out.body_html), highlight=False)

    in_program(database_url, program, None, work, write=False)


@app.command("config")
def config(
    changes: Annotated[
        str | None,
        typer.Option(
            "--set",
            help='Settings to change, as JSON, e.g. \'{"quiet_hours": {"start": "21:00", '
            '"end": "09:00"}, "frequency_cap": {"messages": 3, "days": 7}}\'.',
        ),
    ] = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Shows (or changes) the program's messaging settings."""
    from fideliza.messaging import service as messaging
    from fideliza.messaging.channels import MessagingSettings

    def work(db: Session, program_id: int, at: datetime) -> None:
        if changes is None:
            current = messaging.get_config(db, program_id=program_id)
        else:
            try:
                parsed = json.loads(changes)
            except json.JSONDecodeError as error:
                raise ValidationError(f"is not JSON ({error})", field="--set") from None
            current = messaging.set_config(
                db,
                program_id=program_id,
                changes=parsed,
                now=at,
                actor="cli",
                allow_private=MessagingSettings().provider_allow_private_addresses,
            )
        console.print_json(json.dumps(current.as_dict()))

    in_program(database_url, program, now, work, write=changes is not None)


@triggers_app.command("run")
def triggers_run(
    database_url: DatabaseOption = None, program: ProgramOption = None, now: NowOption = None
) -> None:
    """Queues the messages every trigger finds due (safe twice: once per member and period)."""
    from fideliza.messaging import service as messaging

    def work(db: Session, program_id: int, at: datetime) -> None:
        counts = messaging.evaluate_triggers(db, program_id=program_id, now=at)
        console.print_json(json.dumps(counts))

    in_program(database_url, program, now, work)


@app.command("dispatch")
def dispatch(
    database_url: DatabaseOption = None, program: ProgramOption = None, now: NowOption = None
) -> None:
    """Sends the due messages (SMTP for e-mail, the provider's webhook for SMS and push)."""
    from fideliza import cli
    from fideliza.messaging import service as messaging
    from fideliza.messaging.channels import ChannelSender, MessagingSettings
    from fideliza.programs import service as programs

    try:
        factory = cli._factory(database_url)
        code = cli._program_code(factory, program)
        at = cli._now(now)
        with factory() as db:
            program_id = programs.get_by_code(db, code=code).id
        settings = MessagingSettings()
        sender = ChannelSender(settings)
        try:
            report = messaging.dispatch_due(
                factory, now=at, sender=sender, settings=settings, program_id=program_id
            )
        finally:
            sender.close()
    except FidelizaError as error:
        cli._fail(error)
        return
    console.print_json(json.dumps(dataclasses.asdict(report)))


@app.command("log")
def send_log(
    member: Annotated[str, typer.Argument(help="The member's external id.")],
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
) -> None:
    """A member's messages, newest first: sent, skipped (and why), failed."""
    from fideliza.members import service as members
    from fideliza.messaging import service as messaging

    def work(db: Session, program_id: int, _at: datetime) -> None:
        found = members.find(db, program_id=program_id, external_id=member)
        table = Table("id", "created", "kind", "channel", "status", "attempts", "reason / subject")
        for row in messaging.send_log(db, program_id=program_id, member_id=found.id, limit=limit):
            table.add_row(
                str(row.id),
                row.created_at.isoformat(timespec="seconds"),
                row.kind,
                row.channel,
                row.status,
                str(row.attempts),
                escape(row.reason or row.subject or ""),
            )
        console.print(table)

    in_program(database_url, program, None, work, write=False)
