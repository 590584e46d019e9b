"""fideliza surveys …: define surveys, send the due invitations, make links, show scores."""

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

app = typer.Typer(no_args_is_help=True, help="Surveys (NPS, CSAT) and their answers.")

# The shared helpers live in fideliza.cli, which imports this module: import them when a
# command runs, never at import time.


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValidationError(f"is not valid JSON: {error}", field=str(file)) from None
    if not isinstance(data, dict):
        raise ValidationError("must hold a JSON object (a survey definition)", field=str(file))
    return data


@app.command("define")
def define(
    file: Annotated[
        Path, typer.Argument(help="A survey definition (JSON).", exists=True, dir_okay=False)
    ],
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Adds a survey, or a new version of one, from a JSON file (errors name the path)."""
    from fideliza import cli
    from fideliza.programs import service as programs
    from fideliza.surveys import service as surveys

    def work(db: Session, program_id: int, at: datetime) -> None:
        definition = _read_json(file)
        found = programs.get(db, program_id=program_id)
        survey = surveys.define(db, program=found, definition=definition, now=at, actor="cli")
        cli.console.print(
            f"survey [bold]{survey.code}[/bold] version {survey.version} "
            f"({survey.kind}, sent on {survey.trigger})"
        )

    in_program(database_url, program, now, work)


@app.command("list")
def list_command(
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    all_versions: Annotated[bool, typer.Option("--all", help="Also the retired versions.")] = False,
) -> None:
    """Lists the program's surveys."""
    from fideliza import cli
    from fideliza.surveys import service as surveys

    def work(db: Session, program_id: int, at: datetime) -> None:
        rows = surveys.list_surveys(db, program_id=program_id, include_retired=all_versions)
        table = Table("code", "version", "kind", "trigger", "active", "created")
        for survey in rows:
            table.add_row(
                survey.code,
                str(survey.version),
                survey.kind,
                survey.trigger,
                "yes" if survey.active else "no",
                survey.created_at.isoformat(timespec="minutes"),
            )
        cli.console.print(table if rows else "no surveys yet")

    in_program(database_url, program, None, work, write=False)


@app.command("invite-due")
def invite_due(
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Invites the members due for a purchase or relationship survey (safe to rerun)."""
    from fideliza import cli
    from fideliza.surveys import service as surveys

    def work(db: Session, program_id: int, at: datetime) -> None:
        count = surveys.invite_due(db, program_id=program_id, now=at)
        cli.console.print(f"{count} invitation(s) made")

    in_program(database_url, program, now, work)


@app.command("link")
def link(
    member: Annotated[str, typer.Argument(help="The member's external id.")],
    survey: Annotated[str, typer.Option("--survey", help="The survey's code.")],
    ref: Annotated[
        str, typer.Option("--ref", help="Why (the same ref gives the same invitation back).")
    ] = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Invites a member by hand and prints the single-use answer link (needs the secret key)."""
    from fideliza import cli
    from fideliza.members import service as members
    from fideliza.surveys import service as surveys

    def work(db: Session, program_id: int, at: datetime) -> None:
        settings = surveys.SurveySettings()
        settings.secret()  # fail before writing anything when links cannot be signed
        person = members.find(db, program_id=program_id, external_id=member)
        invitation = surveys.invite(
            db,
            program_id=program_id,
            survey_code=survey,
            member=person,
            source_ref=ref,
            now=at,
        )
        url = surveys.link_of(invitation, settings=settings)
        state = "answered" if invitation.answered_at else f"until {invitation.expires_at:%Y-%m-%d}"
        cli.console.print(url, soft_wrap=True)
        cli.errors.print(f"invitation {invitation.id} ({state})")

    in_program(database_url, program, now, work)


@app.command("scores")
def scores_command(
    kind: Annotated[str, typer.Option(help="nps or csat.")] = "nps",
    period: Annotated[str, typer.Option(help="month or quarter.")] = "month",
    by: Annotated[
        str | None, typer.Option(help="channel, store, tier or segment (default: overall).")
    ] = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
) -> None:
    """NPS or CSAT per period (and group) with the 95 % interval and the change."""
    from fideliza import cli
    from fideliza.programs import service as programs
    from fideliza.surveys.scores import scores

    def work(db: Session, program_id: int, at: datetime) -> None:
        found = programs.get(db, program_id=program_id)
        rows = scores(db, program=found, kind=kind, period=period, by=by)
        table = Table("period", by or "group", "responses", kind.upper(), "95 % interval", "change")
        for row in rows:
            change = "" if row.change is None else f"{row.change:+}"
            table.add_row(
                row.period,
                row.group,
                str(row.score.responses),
                str(row.score.value),
                f"{row.score.low} – {row.score.high}",
                change,
            )
        cli.console.print(table if rows else f"no {kind} answers yet")

    in_program(database_url, program, None, work, write=False)
