"""Gift cards and e-wallets: issue (admin), look up, top up, spend, refund (pos), wallets (read).

A till's transaction id (`reference`) or the Idempotency-Key header makes every money write
idempotent. Routes that take a card code are rate limited per API key, and an unknown code and
a wrong PIN get the same 422 `card_not_accepted`, so a till cannot probe for codes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.pagination import CursorQuery, Page, decode_cursor, encode_cursor
from fideliza.api.ratelimit import sensitive
from fideliza.api.validation import DecimalText, IdPath, Limit, Reason, Timestamp
from fideliza.apikeys.domain import Scope
from fideliza.core.errors import ValidationError
from fideliza.giftcards import service as giftcards
from fideliza.giftcards.models import GiftCard

router = APIRouter(prefix="/v1", tags=["giftcards"], responses=PROBLEM_RESPONSES)
READ = reader()
WRITE = writer()
ADMIN = writer(Scope.ADMIN)
# Every request that names a card by its code spends a token: a look-up is a guess all the same.
CARD_PROBE = [Depends(sensitive("gift_card", Scope.POS))]

Code = Annotated[str, Field(min_length=2, max_length=100, description="As printed: 'K7QM-…'.")]
Pin = Annotated[str | None, Field(default=None, min_length=1, max_length=20)]
Currency = Annotated[str | None, Field(default=None, pattern=r"^[A-Z]{3}$")]
Reference = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=150,
        description="Your transaction id: the same reference twice moves money once.",
    ),
]


class CardIssueIn(BaseModel):
    """A new card worth `amount` of the program's currency."""

    model_config = ConfigDict(extra="forbid")

    amount: DecimalText
    currency: Currency = None
    pin: Pin = None
    member_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    expires_at: Timestamp | None = None
    reason: Reason | None = None


class CardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code
    pin: Pin = None


class CardMoneyIn(CardIn):
    """An amount to top up or spend on the card of `code`."""

    amount: DecimalText
    currency: Currency = None
    reference: Reference = None
    reason: Reason | None = None


class MoneyIn(BaseModel):
    """An amount to spend from a wallet or to refund of a spend."""

    model_config = ConfigDict(extra="forbid")

    amount: DecimalText
    currency: Currency = None
    reference: Reference = None
    reason: Reason | None = None


class CardStatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "frozen", "closed"]
    reason: Reason | None = None


class CardRead(BaseModel):
    """A card as a till may see it: never its code, only the last four characters."""

    id: int
    code_hint: str
    currency: str
    balance: Decimal
    status: str
    member_id: int | None
    expires_at: datetime | None
    issued_at: datetime


class CardIssued(CardRead):
    """The new card. `code` is shown in this response only (a replay gets null)."""

    code: str | None
    transaction_id: int


class MoveRead(BaseModel):
    """A money transaction: what moved and the balance it left."""

    transaction_id: int
    kind: str
    amount: Decimal
    currency: str
    balance_after: Decimal
    recorded_at: datetime
    refunds_id: int | None
    replayed: bool


class WalletRead(BaseModel):
    currency: str
    balance: Decimal


class WalletMoveRead(BaseModel):
    transaction_id: int
    kind: str
    amount: Decimal
    currency: str
    balance_after: Decimal
    recorded_at: datetime
    reason: str | None
    refunds_id: int | None


def _card_read(db: Session, card: GiftCard) -> CardRead:
    view = giftcards.card_view(db, card=card)
    return CardRead(
        id=card.id,
        code_hint=card.code_hint,
        currency=card.currency,
        balance=view.balance,
        status=card.status,
        member_id=card.member_id,
        expires_at=card.expires_at,
        issued_at=card.issued_at,
    )


def _move_read(move: giftcards.Move) -> MoveRead:
    return MoveRead(
        transaction_id=move.transaction_id,
        kind=move.kind.value,
        amount=move.amount,
        currency=move.currency,
        balance_after=move.balance_after,
        recorded_at=move.recorded_at,
        refunds_id=move.refunds_id,
        replayed=move.replayed,
    )


def _moved(move: giftcards.Move) -> Response:
    return json_response(_move_read(move), status=200 if move.replayed else 201)


def _key(call: Write, reference: str | None) -> str:
    """The money ledger's idempotency key: the till's reference, else one derived from the
    Idempotency-Key header (so even a retry after the header's retention moves money once)."""
    if reference is not None:
        return f"ref:{reference}"
    if call.idempotency_key is None:
        raise ValidationError(
            "is required for a money write without a `reference`", field="Idempotency-Key"
        )
    digest = hashlib.sha256(f"{call.caller.key_id}:{call.idempotency_key}".encode()).hexdigest()
    return f"key:{digest}"


def _without_code(body: bytes) -> bytes:
    """What is kept for a replay of an issue: everything but the code."""
    stored = json.loads(body)
    stored["code"] = None
    return json.dumps(stored).encode()


@router.post("/gift-cards", status_code=201, response_model=CardIssued)
def issue_card(body: CardIssueIn, call: Annotated[Write, Depends(ADMIN)]) -> Response:
    """Issues a card; its code is in this response and nowhere else, ever."""

    def work(db: Session) -> Response:
        issued = giftcards.issue_card(
            db,
            program_id=call.program_id,
            amount=body.amount,
            currency=body.currency,
            pin=body.pin,
            member_id=body.member_id,
            expires_at=body.expires_at,
            now=call.now,
            actor=call.caller.actor,
            reason=body.reason,
        )
        read = _card_read(db, issued.card)
        result = CardIssued(
            **read.model_dump(), code=issued.code, transaction_id=issued.move.transaction_id
        )
        return json_response(result, status=201)

    return call.run(work, store=_without_code)


@router.post("/gift-cards/lookup", response_model=CardRead, dependencies=CARD_PROBE)
def look_up(body: CardIn, call: Annotated[Call, Depends(reader(Scope.POS))]) -> CardRead:
    """A card's balance and status, by its code (and PIN). Rate limited per API key."""
    with call.session() as db:
        view = giftcards.look_up(db, program_id=call.program_id, code=body.code, pin=body.pin)
        return _card_read(db, view.card)


@router.post(
    "/gift-cards/top-ups", status_code=201, response_model=MoveRead, dependencies=CARD_PROBE
)
def top_up(body: CardMoneyIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Adds value to a card (200 with `replayed` for a reference seen before)."""
    key = _key(call, body.reference)

    def work(db: Session) -> Response:
        return _moved(
            giftcards.top_up(
                db,
                program_id=call.program_id,
                code=body.code,
                pin=body.pin,
                amount=body.amount,
                currency=body.currency,
                idempotency_key=key,
                now=call.now,
                reason=body.reason,
                actor=call.caller.actor,
            )
        )

    return call.run(work)


@router.post(
    "/gift-cards/spends", status_code=201, response_model=MoveRead, dependencies=CARD_PROBE
)
def spend_card(body: CardMoneyIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Pays with a card; never more than its balance (409 `insufficient_funds`)."""
    key = _key(call, body.reference)

    def work(db: Session) -> Response:
        return _moved(
            giftcards.spend_card(
                db,
                program_id=call.program_id,
                code=body.code,
                pin=body.pin,
                amount=body.amount,
                currency=body.currency,
                idempotency_key=key,
                now=call.now,
                reason=body.reason,
                actor=call.caller.actor,
            )
        )

    return call.run(work)


@router.post("/gift-cards/{card_id}/status", response_model=CardRead)
def set_card_status(
    card_id: IdPath, body: CardStatusIn, call: Annotated[Write, Depends(ADMIN)]
) -> Response:
    """Freezes, unfreezes or closes a card (only an empty card closes; closed is final)."""

    def work(db: Session) -> Response:
        card = giftcards.set_status(
            db,
            program_id=call.program_id,
            card_id=card_id,
            status=body.status,
            now=call.now,
            actor=call.caller.actor,
            reason=body.reason,
        )
        return json_response(_card_read(db, card))

    return call.run(work)


@router.post("/spends/{spend_id}/refunds", status_code=201, response_model=MoveRead)
def refund(spend_id: IdPath, body: MoneyIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Gives back (part of) a card or wallet spend; refunds add up to the spend at most."""
    key = _key(call, body.reference)

    def work(db: Session) -> Response:
        return _moved(
            giftcards.refund(
                db,
                program_id=call.program_id,
                spend_transaction_id=spend_id,
                amount=body.amount,
                currency=body.currency,
                idempotency_key=key,
                now=call.now,
                reason=body.reason,
                actor=call.caller.actor,
            )
        )

    return call.run(work)


@router.post("/members/{member_id}/wallet/spends", status_code=201, response_model=MoveRead)
def spend_wallet(
    member_id: IdPath, body: MoneyIn, call: Annotated[Write, Depends(WRITE)]
) -> Response:
    """Pays from the member's wallet (the program's currency unless `currency` says another)."""
    key = _key(call, body.reference)

    def work(db: Session) -> Response:
        return _moved(
            giftcards.spend_wallet(
                db,
                program_id=call.program_id,
                member_id=member_id,
                amount=body.amount,
                currency=body.currency,
                idempotency_key=key,
                now=call.now,
                reason=body.reason,
                actor=call.caller.actor,
            )
        )

    return call.run(work)


@router.get("/members/{member_id}/wallets", response_model=list[WalletRead])
def wallets(member_id: IdPath, call: Annotated[Call, Depends(READ)]) -> list[WalletRead]:
    """The member's wallets, one per currency (none before the first credit)."""
    with call.session() as db:
        return [
            WalletRead(
                currency=w.currency,
                balance=giftcards.in_currency(w.balance or Decimal(0), w.currency),
            )
            for w in giftcards.wallets(db, program_id=call.program_id, member_id=member_id)
        ]


@router.get("/members/{member_id}/wallets/history", response_model=Page[WalletMoveRead])
def wallet_history(
    member_id: IdPath,
    call: Annotated[Call, Depends(READ)],
    limit: Limit = 50,
    cursor: CursorQuery = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
) -> Page[WalletMoveRead]:
    """The wallets' transactions, newest first."""
    with call.session() as db:
        found = giftcards.wallets(db, program_id=call.program_id, member_id=member_id)
        accounts = [w.id for w in found if currency is None or w.currency == currency]
        rows = giftcards.history(
            db, account_ids=accounts, limit=limit + 1, before_id=decode_cursor(cursor)
        )
        page = rows[:limit]
        return Page[WalletMoveRead](
            items=[
                WalletMoveRead(
                    transaction_id=tx.id,
                    kind=tx.kind,
                    amount=giftcards.in_currency(tx.amount, tx.currency),
                    currency=tx.currency,
                    balance_after=giftcards.in_currency(tx.balance_after, tx.currency),
                    recorded_at=tx.recorded_at,
                    reason=tx.reason,
                    refunds_id=tx.refunds_id,
                )
                for tx in page
            ],
            next_cursor=encode_cursor(page[-1].id) if len(rows) > limit else None,
        )
