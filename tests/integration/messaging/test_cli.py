"""`fideliza messages …` driven in-process, on SQLite and PostgreSQL, sending to a real SMTP
server."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

from sqlalchemy.orm import Session
from typer.testing import CliRunner

from fideliza import cli
from tests.integration.messaging.support import SECRET, Mailbox, make_shop

NOW = "2025-03-10T12:00:00+00:00"


def test_templates_triggers_dispatch_and_log(
    db: Session, now: datetime, database_url: str, tmp_path: Path, mailbox: Mailbox
) -> None:
    shop = make_shop(db, now)
    member = shop.member(birthday=date(1990, 3, 10), first_name="Íñigo")
    runner = CliRunner()
    base = ["--database-url", database_url, "--program", shop.program.code]
    env = {
        "FIDELIZA_SECRET_KEY": SECRET,
        "FIDELIZA_SMTP_HOST": mailbox.host,
        "FIDELIZA_SMTP_PORT": str(mailbox.port),
        "FIDELIZA_SMTP_FROM": "Café <cafe@example.com>",
    }

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli.app, ["messages", *args], env=env)
        return result.exit_code, result.output

    bad = tmp_path / "bad.txt"
    bad.write_text("Hola {{ member.apodo }}", encoding="utf-8")
    code, out = run("templates", "set", "birthday", "--text", str(bad), "--subject", "x", *base)
    assert code == 2 and "body_text" in out and "apodo" in out
    good = tmp_path / "good.txt"
    good.write_text("¡Feliz cumpleaños, {{ member.first_name }}! {{ unsubscribe_url }}", "utf-8")
    code, out = run(
        "templates", "set", "birthday", "--text", str(good), "--subject", "Para ti", *base
    )
    assert code == 0, out
    code, out = run("templates", "list", *base)
    assert code == 0 and "birthday" in out and "Para ti" in out
    code, out = run("templates", "preview", "birthday", "--member", member.external_id, *base)
    assert code == 0 and "¡Feliz cumpleaños, Íñigo!" in out
    code, out = run("config", "--set", '{"triggers": ["birthday"]}', *base, "--now", NOW)
    assert code == 0 and json.loads(out)["triggers"] == ["birthday"]
    code, out = run("config", "--set", '{"frequency_cap": 3}', *base)
    assert code == 2 and "frequency_cap" in out
    code, out = run("triggers", "run", *base, "--now", NOW)
    assert code == 0 and json.loads(out) == {"birthday": 1}
    code, out = run("triggers", "run", *base, "--now", NOW)
    assert json.loads(out) == {"birthday": 0}
    code, out = run("dispatch", *base, "--now", NOW)
    assert code == 0 and json.loads(out)["sent"] == 1, out
    [email] = mailbox.messages
    assert email["Subject"] == "Para ti"
    body = email.get_body(preferencelist=("plain",))
    assert body is not None and "¡Feliz cumpleaños, Íñigo!" in body.get_content()
    code, out = run("log", member.external_id, *base)
    assert code == 0 and "birthday" in out and "sent" in out
