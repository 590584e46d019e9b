"""CLI sub-commands of the domains that came after the foundation (one module each)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy.orm import Session

from fideliza.core.errors import FidelizaError

T = TypeVar("T")


def run_in_program(
    database_url: str | None,
    program: str | None,
    now: str | None,
    work: Callable[[Session, int, datetime], T],
    *,
    write: bool = True,
) -> T:
    """Runs `work(db, program_id, now)` in one unit of work (read-only: without a commit)."""
    # Imported here: `fideliza.cli` imports this package.
    from fideliza import cli
    from fideliza.db import unit_of_work
    from fideliza.programs import service as programs

    factory = cli._factory(database_url)
    code = cli._program_code(factory, program)
    at = cli._now(now)
    if not write:  # closing without a commit keeps nothing, and leaves the rows readable
        with factory() as db:
            return work(db, programs.get_by_code(db, code=code).id, at)
    with unit_of_work(factory) as db:
        return work(db, programs.get_by_code(db, code=code).id, at)


def in_program(
    database_url: str | None,
    program: str | None,
    now: str | None,
    work: Callable[[Session, int, datetime], T],
    *,
    write: bool = True,
) -> T:
    """`run_in_program`, with a FidelizaError printed and the command exiting with 2."""
    from fideliza import cli

    try:
        return run_in_program(database_url, program, now, work, write=write)
    except FidelizaError as error:
        cli._fail(error)
        raise  # _fail exits; this keeps the type checker informed
