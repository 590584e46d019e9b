"""fideliza surveys …: define surveys, send the due invitations, make links, show scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

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
    from fideliza.db import unit_of_work
    from fideliza.programs import service as programs
    from fideliza.surveys import service as surveys

    factory = cli._factory(database_url)

    def work() -> None:
        definition = _read_json(file)
        with unit_of_work(factory) as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            survey = surveys.define(
                db, program=found, definition=definition, now=cli._now(now), actor="cli"
            )
            cli.console.print(
                f"survey [bold]{survey.code}[/bold] version {survey.version} "
                f"({survey.kind}, sent on {survey.trigger})"
            )

    cli._run(work)


@app.command("list")
def list_command(
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    all_versions: Annotated[bool, typer.Option("--all", help="Also the retired versions.")] = False,
) -> None:
    """Lists the program's surveys."""
    from fideliza import cli
    from fideliza.programs import service as programs
    from fideliza.surveys import service as surveys

    factory = cli._factory(database_url)

    def work() -> None:
        with factory() as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            rows = surveys.list_surveys(db, program_id=found.id, include_retired=all_versions)
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

    cli._run(work)


@app.command("invite-due")
def invite_due(
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Invites the members due for a purchase or relationship survey (safe to rerun)."""
    from fideliza import cli
    from fideliza.db import unit_of_work
    from fideliza.programs import service as programs
    from fideliza.surveys import service as surveys

    factory = cli._factory(database_url)

    def work() -> None:
        with unit_of_work(factory) as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            count = surveys.invite_due(db, program_id=found.id, now=cli._now(now))
        cli.console.print(f"{count} invitation(s) made")

    cli._run(work)


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
    from fideliza.db import unit_of_work
    from fideliza.members import service as members
    from fideliza.programs import service as programs
    from fideliza.surveys import service as surveys

    factory = cli._factory(database_url)

    def work() -> None:
        settings = surveys.SurveySettings()
        settings.secret()  # fail before writing anything when links cannot be signed
        with unit_of_work(factory) as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
            person = members.find(db, program_id=found.id, external_id=member)
            invitation = surveys.invite(
                db,
                program_id=found.id,
                survey_code=survey,
                member=person,
                source_ref=ref,
                now=cli._now(now),
            )
            url = surveys.link_of(invitation, settings=settings)
        state = "answered" if invitation.answered_at else f"until {invitation.expires_at:%Y-%m-%d}"
        cli.console.print(url, soft_wrap=True)
        cli.errors.print(f"invitation {invitation.id} ({state})")

    cli._run(work)


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

    factory = cli._factory(database_url)

    def work() -> None:
        with factory() as db:
            found = programs.get_by_code(db, code=cli._program_code(factory, program))
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

    cli._run(work)
