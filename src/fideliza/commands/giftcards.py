"""fideliza giftcards …: issue (the code is printed once), balance, top-up, spend, refund, status,
expire, check. For the program's staff: a refused card says why (unknown code or wrong PIN)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.orm import Session

from fideliza.commands import run_in_program
from fideliza.commands.options import DatabaseOption, NowOption, ProgramOption
from fideliza.core.errors import FidelizaError

app = typer.Typer(no_args_is_help=True, help="Gift cards and e-wallets.")
console = Console()
errors = Console(stderr=True)
T = TypeVar("T")

CodeArgument = Annotated[str, typer.Argument(help="The card's code (spaces and dashes ignored).")]
PinOption = Annotated[str | None, typer.Option("--pin", help="The card's PIN, if it has one.")]
AmountArgument = Annotated[str, typer.Argument(help="An amount, e.g. 12.50 (never a float).")]
KeyOption = Annotated[
    str,
    typer.Option(
        "--key", help="Idempotency key (e.g. the till's transaction id): a retry does it once."
    ),
]
ActorOption = Annotated[str, typer.Option("--actor", help="Who does this (for the audit log).")]


def _in_program(
    database_url: str | None,
    program: str | None,
    now: str | None,
    work: Callable[[Session, int, datetime], T],
    *,
    write: bool = True,
) -> T:
    """`commands.in_program`, telling staff why a card was not accepted."""
    from fideliza import cli
    from fideliza.giftcards.errors import CardNotAccepted

    try:
        return run_in_program(database_url, program, now, work, write=write)
    except CardNotAccepted as refused:
        # Staff see why; a till only ever gets the generic message.
        errors.print(
            f"[red]error[/red] ({refused.code}) [bold]code[/bold]: {escape(refused.message)}"
            f" — because: {refused.because.value.replace('_', ' ')}"
        )
        raise typer.Exit(2) from None
    except FidelizaError as error:
        cli._fail(error)
        raise  # _fail exits; this keeps the type checker informed


def _money(value: Decimal, currency: str) -> str:
    return f"{value} {currency}"


def _show_move(move: Any, verb: str) -> None:
    note = " (a retry: the first result, nothing moved again)" if move.replayed else ""
    console.print(
        f"[green]✓[/green] {verb} {_money(move.amount, move.currency)}; balance "
        f"{_money(move.balance_after, move.currency)} (transaction {move.transaction_id}){note}"
    )


@app.command("issue")
def issue(
    amount: AmountArgument,
    pin: PinOption = None,
    member: Annotated[
        str | None, typer.Option("--member", help="Owner: the member's external id.")
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Expiry, ISO 8601 (default: never).")
    ] = None,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Issues a gift card; its code is shown now and never again."""
    from fideliza.core.clock import parse_timestamp
    from fideliza.giftcards import service as giftcards
    from fideliza.members import service as members

    def work(db: Session, program_id: int, at: datetime) -> Any:
        member_id = None
        if member is not None:
            found = members.ids_by_external_id(db, program_id=program_id, external_ids=[member])
            if member not in found:
                raise FidelizaError(f"no member {member!r} in this program", field="--member")
            member_id = found[member]
        return giftcards.issue_card(
            db,
            program_id=program_id,
            amount=amount,
            pin=pin,
            member_id=member_id,
            expires_at=parse_timestamp(expires, field="--expires") if expires else None,
            now=at,
            actor=actor,
        )

    issued = _in_program(database_url, program, now, work)
    card = issued.card
    console.print(f"[bold]{issued.code}[/bold]")
    console.print(
        f"gift card {card.id}: {_money(issued.move.balance_after, card.currency)}"
        + (f", expires {card.expires_at.isoformat()}" if card.expires_at else "")
        + (", PIN set" if card.pin_hash else "")
    )
    console.print("[yellow]Write the code down now: it is stored hashed and cannot be shown again.")


@app.command("balance")
def balance(
    code: CodeArgument,
    pin: PinOption = None,
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """A card's balance, status and expiry."""
    from fideliza.giftcards import service as giftcards

    view = _in_program(
        database_url,
        program,
        now,
        lambda db, program_id, at: giftcards.look_up(db, program_id=program_id, code=code, pin=pin),
        write=False,
    )
    card = view.card
    expiry = card.expires_at.isoformat() if card.expires_at else "never"
    console.print(
        f"gift card {card.id} (…{card.code_hint}): {_money(view.balance, card.currency)}, "
        f"{card.status}, expires {expiry}"
    )


@app.command("top-up")
def top_up(
    code: CodeArgument,
    amount: AmountArgument,
    key: KeyOption,
    pin: PinOption = None,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Adds value to a card."""
    from fideliza.giftcards import service as giftcards

    move = _in_program(
        database_url,
        program,
        now,
        lambda db, program_id, at: giftcards.top_up(
            db,
            program_id=program_id,
            code=code,
            pin=pin,
            amount=amount,
            idempotency_key=key,
            now=at,
            actor=actor,
        ),
    )
    _show_move(move, "topped up")


@app.command("spend")
def spend(
    code: CodeArgument,
    amount: AmountArgument,
    key: KeyOption,
    pin: PinOption = None,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Pays with a card (never more than its balance)."""
    from fideliza.giftcards import service as giftcards

    move = _in_program(
        database_url,
        program,
        now,
        lambda db, program_id, at: giftcards.spend_card(
            db,
            program_id=program_id,
            code=code,
            pin=pin,
            amount=amount,
            idempotency_key=key,
            now=at,
            actor=actor,
        ),
    )
    _show_move(move, "spent")


@app.command("refund")
def refund(
    spend_transaction: Annotated[int, typer.Argument(help="The spend's transaction id.")],
    amount: AmountArgument,
    key: KeyOption,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Gives back (part of) a spend to its card or wallet."""
    from fideliza.giftcards import service as giftcards

    move = _in_program(
        database_url,
        program,
        now,
        lambda db, program_id, at: giftcards.refund(
            db,
            program_id=program_id,
            spend_transaction_id=spend_transaction,
            amount=amount,
            idempotency_key=key,
            now=at,
            actor=actor,
        ),
    )
    _show_move(move, "refunded")


@app.command("status")
def status(
    card_id: Annotated[int, typer.Argument(help="The card's id (as `issue` printed it).")],
    new_status: Annotated[str, typer.Argument(help="active, frozen or closed.")],
    reason: Annotated[str | None, typer.Option(help="Why (for the audit log).")] = None,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
    program: ProgramOption = None,
    now: NowOption = None,
) -> None:
    """Freezes, unfreezes or closes a card."""
    from fideliza.giftcards import service as giftcards

    card = _in_program(
        database_url,
        program,
        now,
        lambda db, program_id, at: giftcards.set_status(
            db,
            program_id=program_id,
            card_id=card_id,
            status=new_status,
            now=at,
            actor=actor,
            reason=reason,
        ),
    )
    console.print(f"[green]✓[/green] gift card {card.id} is {card.status}")


@app.command("expire")
def expire(
    database_url: DatabaseOption = None, program: ProgramOption = None, now: NowOption = None
) -> None:
    """Moves what is left on expired cards to breakage (once per card)."""
    from fideliza.giftcards import service as giftcards

    count = _in_program(
        database_url,
        program,
        now,
        lambda db, program_id, at: giftcards.expire_due(db, program_id=program_id, now=at),
    )
    console.print(f"[green]✓[/green] {count} card(s) expired")


@app.command("check")
def check(database_url: DatabaseOption = None, program: ProgramOption = None) -> None:
    """Recomputes every money balance from the entries; exit status 1 if anything differs."""
    from fideliza.giftcards.check import check_money_ledger

    found = _in_program(
        database_url,
        program,
        None,
        lambda db, program_id, at: check_money_ledger(db, program_id=program_id),
        write=False,
    )
    for discrepancy in found:
        console.print(f"[red]✗[/red] {discrepancy}")
    if found:
        console.print(f"[red]{len(found)} difference(s)[/red]")
        raise typer.Exit(1)
    console.print(
        "[green]✓[/green] money ledger consistent: every balance equals the sum of its entries"
    )
