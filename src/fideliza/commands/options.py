"""The options every `fideliza` command shares (database, program, clock), declared once."""

from __future__ import annotations

from typing import Annotated

import typer

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="FIDELIZA_DATABASE_URL", help="SQLAlchemy URL."),
]
ProgramOption = Annotated[
    str | None, typer.Option("--program", "-p", help="Program code (default: the only one).")
]
NowOption = Annotated[
    str | None, typer.Option("--now", help="Run as of this ISO 8601 instant (default: the clock).")
]
