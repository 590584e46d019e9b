"""`fideliza surveys …` driven in-process against the test databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from fideliza import cli
from fideliza.db import unit_of_work
from fideliza.surveys import service as surveys
from tests.factories import make_member, make_program
from tests.integration.surveys.builders import buy, nps_survey

SECRET = "a-cli-test-secret-of-at-least-32-characters"


def _run(url: str, code: str, *args: str) -> Result:
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1", "FIDELIZA_SECRET_KEY": SECRET})
    return runner.invoke(cli.app, [*args, "--database-url", url, "--program", code])


def test_define_invite_link_answer_and_score_from_the_command_line(
    database_url: str,
    session_factory: sessionmaker[Session],
    now: datetime,
    tmp_path: Path,
) -> None:
    with unit_of_work(session_factory) as db:
        program = make_program(db, now=now)
        ana = make_member(db, program=program, now=now)
        bea = make_member(db, program=program, now=now)
    code = program.code
    definition = tmp_path / "nps.json"
    definition.write_text(json.dumps(nps_survey()), encoding="utf-8")

    defined = _run(
        database_url, code, "surveys", "define", str(definition), "--now", now.isoformat()
    )
    assert defined.exit_code == 0, defined.output
    assert "survey nps version 1 (nps, sent on purchase)" in defined.output

    broken = tmp_path / "broken.json"
    bad = nps_survey()
    bad["questions"][0]["type"] = "stars"
    broken.write_text(json.dumps(bad), encoding="utf-8")
    refused = _run(database_url, code, "surveys", "define", str(broken))
    assert refused.exit_code == 2
    assert "questions[0].type" in refused.output

    listed = _run(database_url, code, "surveys", "list")
    assert listed.exit_code == 0 and "nps" in listed.output and "purchase" in listed.output

    with unit_of_work(session_factory) as db:
        buy(db, program=program, member=ana, at=now + timedelta(hours=1))
    due = _run(
        database_url, code, "surveys", "invite-due", "--now", (now + timedelta(hours=2)).isoformat()
    )
    assert due.exit_code == 0 and "1 invitation(s) made" in due.output

    made = _run(database_url, code, "surveys", "link", bea.external_id, "--survey", "nps")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().rsplit("/", 1)[-1]
    with unit_of_work(session_factory) as db:
        settings = surveys.SurveySettings(secret_key=SECRET)  # type: ignore[arg-type]
        surveys.answer(
            db,
            token=token,
            answers={"recommend": 10},
            now=now + timedelta(hours=3),
            settings=settings,
        )

    shown = _run(database_url, code, "surveys", "scores", "--kind", "nps")
    assert shown.exit_code == 0, shown.output
    assert "2025-03" in shown.output and "100.0" in shown.output

    wrong = _run(database_url, code, "surveys", "scores", "--kind", "stars")
    assert wrong.exit_code == 2 and "kind" in wrong.output


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_define_refuses_a_file_that_is_not_a_definition(
    database_url: str,
    session_factory: sessionmaker[Session],
    now: datetime,
    tmp_path: Path,
    content: str,
) -> None:
    with unit_of_work(session_factory) as db:
        program = make_program(db, now=now)
    file = tmp_path / "survey.json"
    file.write_text(content, encoding="utf-8")
    result = _run(database_url, program.code, "surveys", "define", str(file))
    assert result.exit_code == 2
    assert "validation_error" in result.output
