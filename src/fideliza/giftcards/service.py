"""Gift card and wallet use cases: issue, top up, credit, spend, refund, expire, freeze, close.

Every function takes the caller's session and never commits. Money moves only while the
customer account is locked (PostgreSQL: `SELECT … FOR UPDATE`; SQLite: every transaction holds
the write lock from its start), and the idempotency key is looked up under that lock, so two
tills sending the same spend, or spending the same last euro, queue instead of both winning.
The `CHECK (balance >= 0)` on the cached balance is the backstop under that check.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fideliza.core import codes
from fideliza.core.clock import require_aware
from fideliza.core.errors import InvalidState, NotFound, ValidationError
from fideliza.core.hashing import content_hash
from fideliza.core.money import require_currency
from fideliza.giftcards.domain import (
    AccountKind,
    CardStatus,
    TxKind,
    card_account_code,
    code_hash,
    code_hint,
    hash_pin,
    refundable,
    require_pin,
    require_usable,
    verify_pin,
)
from fideliza.giftcards.errors import CardNotAccepted, InsufficientFunds, RefusedBecause
from fideliza.giftcards.models import GiftCard, MoneyAccount, MoneyTransaction
from fideliza.giftcards.posting import (
    MAX_KEY_LENGTH,
    Move,
    in_currency,
    lock_account,
    parse_amount,
    post,
    replay,
    require_key,
    system_account,
    wallet_account,
)
from fideliza.members import service as members
from fideliza.programs import service as programs

log = logging.getLogger("fideliza.giftcards")

# Keys of wallet credits live apart from the keys tills send.
CREDIT_KEY_PREFIX = "wallet-credit:"


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """A new card: `code` is the only time the code exists outside the holder's hands."""

    card: GiftCard
    code: str
    move: Move


@dataclass(frozen=True, slots=True)
class CardView:
    card: GiftCard
    balance: Decimal


# --- gift cards -------------------------------------------------------------------------------


def issue_card(
    db: Session,
    *,
    program_id: int,
    amount: object,
    now: datetime,
    currency: str | None = None,
    pin: str | None = None,
    member_id: int | None = None,
    expires_at: datetime | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> IssuedCard:
    """Issues a card worth `amount` of the program's currency; the code is returned only here."""
    program = programs.get(db, program_id=program_id)
    value = parse_amount(amount, currency=program.currency, given_currency=currency)
    if expires_at is not None and require_aware(expires_at, field="expires_at") <= now:
        raise ValidationError("must be in the future", field="expires_at")
    pin_hash = hash_pin(require_pin(pin)) if pin is not None else None
    if member_id is not None:
        members.get(db, program_id=program_id, member_id=member_id)
    code = codes.new_code()
    normalized = codes.normalize(code)
    hashed = code_hash(normalized)
    account = MoneyAccount(
        program_id=program_id,
        member_id=member_id,
        kind=AccountKind.GIFT_CARD.value,
        code=card_account_code(hashed),
        currency=program.currency,
        balance=Decimal(0),
        created_at=now,
    )
    db.add(account)
    db.flush()
    card = GiftCard(
        program_id=program_id,
        account_id=account.id,
        code_hash=hashed,
        code_hint=code_hint(normalized),
        pin_hash=pin_hash,
        currency=program.currency,
        initial_value=value,
        status=CardStatus.ACTIVE.value,
        member_id=member_id,
        issued_at=now,
        issued_by=actor,
        expires_at=expires_at,
        expired_at=None,
    )
    db.add(card)
    db.flush()
    move = post(
        db,
        program_id=program_id,
        account=account,
        kind=TxKind.ISSUE,
        amount=value,
        counter_account_id=system_account(
            db, program_id, AccountKind.ISSUED, program.currency, now
        ),
        now=now,
        reason=reason or "gift card issued",
        actor=actor,
    )
    details = {
        "card_id": card.id,
        "code_hint": card.code_hint,
        "amount": str(value),
        "currency": card.currency,
        "member_id": member_id,
        "expires_at": expires_at.isoformat() if expires_at else None,
    }
    programs.audit(
        db,
        program_id=program_id,
        action="fideliza.giftcards.issued",
        subject=f"gift_card:{card.id}",
        now=now,
        actor=actor,
        data=details,
    )
    programs.publish(
        db, program_id=program_id, event_type="giftcard.issued", payload=details, now=now
    )
    return IssuedCard(card=card, code=code, move=move)


def authenticate(db: Session, *, program_id: int, code: str, pin: str | None) -> GiftCard:
    """The card of `code`, if `pin` opens it; else one error for an unknown code or a wrong PIN.

    A typo (a bad check character) is told apart: that needs no look-up and reveals nothing.
    One PIN hash is computed whatever the outcome, so the time taken tells nothing either.
    """
    normalized = codes.check(code)
    card = db.scalar(
        select(GiftCard).where(
            GiftCard.program_id == program_id, GiftCard.code_hash == code_hash(normalized)
        )
    )
    pin_ok = verify_pin(pin, card.pin_hash if card is not None else None)
    if card is None:
        log.info("gift card refused in program %s: unknown code", program_id)
        raise CardNotAccepted(RefusedBecause.UNKNOWN_CODE)
    if card.pin_hash is not None and not pin_ok:
        log.info("gift card %s refused: wrong PIN", card.id)
        raise CardNotAccepted(RefusedBecause.WRONG_PIN)
    return card


def get_card(db: Session, *, program_id: int, card_id: int) -> GiftCard:
    card = db.get(GiftCard, card_id)
    if card is None or card.program_id != program_id:
        raise NotFound(f"gift card {card_id} does not exist", field="card_id")
    return card


def card_view(db: Session, *, card: GiftCard) -> CardView:
    account = db.get(MoneyAccount, card.account_id, populate_existing=True)
    assert account is not None and account.balance is not None
    return CardView(card=card, balance=in_currency(account.balance, card.currency))


def look_up(db: Session, *, program_id: int, code: str, pin: str | None) -> CardView:
    """A card and its balance, for a till that has the code (and the PIN, if it has one)."""
    return card_view(db, card=authenticate(db, program_id=program_id, code=code, pin=pin))


def _locked_card(db: Session, card: GiftCard) -> MoneyAccount:
    account = lock_account(db, card.account_id)
    db.refresh(card)  # re-read under the lock: a freeze or an expiry may have just committed
    return account


def top_up(
    db: Session,
    *,
    program_id: int,
    code: str,
    pin: str | None,
    amount: object,
    idempotency_key: str,
    now: datetime,
    currency: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> Move:
    """Adds value sold to an active card (issued → card)."""
    key = require_key(idempotency_key)
    card = authenticate(db, program_id=program_id, code=code, pin=pin)
    value = parse_amount(amount, currency=card.currency, given_currency=currency)
    request = content_hash({"kind": "top_up", "card": card.id, "amount": value})
    account = _locked_card(db, card)
    first = replay(
        db, program_id=program_id, key=key, request_hash=request, field="idempotency_key"
    )
    if first is not None:
        return first
    require_usable(status=card.status, expires_at=card.expires_at, now=now, spending=True)
    return post(
        db,
        program_id=program_id,
        account=account,
        kind=TxKind.TOP_UP,
        amount=value,
        counter_account_id=system_account(db, program_id, AccountKind.ISSUED, card.currency, now),
        now=now,
        reason=reason or "gift card topped up",
        actor=actor,
        idempotency_key=key,
        request_hash=request,
    )


def _spend(
    db: Session,
    *,
    program_id: int,
    account: MoneyAccount,
    value: Decimal,
    key: str,
    request: str,
    now: datetime,
    reason: str | None,
    actor: str | None,
    usable: Any = None,
) -> Move:
    first = replay(
        db, program_id=program_id, key=key, request_hash=request, field="idempotency_key"
    )
    if first is not None:
        return first
    if usable is not None:
        usable()
    assert account.balance is not None
    if account.balance < value:
        raise InsufficientFunds(
            f"is more than the balance ({account.balance} {account.currency})", field="amount"
        )
    return post(
        db,
        program_id=program_id,
        account=account,
        kind=TxKind.SPEND,
        amount=-value,
        counter_account_id=system_account(db, program_id, AccountKind.SPENT, account.currency, now),
        now=now,
        reason=reason,
        actor=actor,
        idempotency_key=key,
        request_hash=request,
    )


def spend_card(
    db: Session,
    *,
    program_id: int,
    code: str,
    pin: str | None,
    amount: object,
    idempotency_key: str,
    now: datetime,
    currency: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> Move:
    """Pays `amount` with a card (card → spent); never more than its balance."""
    key = require_key(idempotency_key)
    card = authenticate(db, program_id=program_id, code=code, pin=pin)
    value = parse_amount(amount, currency=card.currency, given_currency=currency)
    request = content_hash({"kind": "spend", "card": card.id, "amount": value})
    account = _locked_card(db, card)
    return _spend(
        db,
        program_id=program_id,
        account=account,
        value=value,
        key=key,
        request=request,
        now=now,
        reason=reason or "paid with a gift card",
        actor=actor,
        usable=lambda: require_usable(
            status=card.status, expires_at=card.expires_at, now=now, spending=True
        ),
    )


def set_status(
    db: Session,
    *,
    program_id: int,
    card_id: int,
    status: str,
    now: datetime,
    actor: str | None = None,
    reason: str | None = None,
) -> GiftCard:
    """Freezes, unfreezes or closes a card; a closed card stays closed, and only an empty card
    closes (spend, refund or let expire what is left first)."""
    try:
        wanted = CardStatus(status)
    except ValueError:
        allowed = ", ".join(s.value for s in CardStatus)
        raise ValidationError(f"must be one of {allowed}, got {status!r}", field="status") from None
    card = get_card(db, program_id=program_id, card_id=card_id)
    account = _locked_card(db, card)
    if card.status == CardStatus.CLOSED:
        raise InvalidState("the card is closed for good", field="status", code="card_closed")
    if wanted == CardStatus.CLOSED and account.balance:
        raise InvalidState(
            f"the card still holds {account.balance} {account.currency}", field="status"
        )
    before, card.status = card.status, wanted.value
    db.flush()
    programs.audit(
        db,
        program_id=program_id,
        action=f"fideliza.giftcards.{wanted.value}",
        subject=f"gift_card:{card.id}",
        now=now,
        actor=actor,
        data={"from": before, "to": wanted.value, "reason": reason},
    )
    return card


def expire_due(db: Session, *, program_id: int, now: datetime) -> int:
    """Moves what is left on each card past its expiry to breakage, once; returns how many cards.

    Locks in the one order every writer uses (the card's account, then the card), and skips
    cards another transaction holds (PostgreSQL `SKIP LOCKED`): the next run takes them, and a
    till cannot spend them meanwhile since they are past their expiry.
    """
    due = db.execute(
        select(GiftCard.id, GiftCard.account_id)
        .where(
            GiftCard.program_id == program_id,
            GiftCard.expired_at.is_(None),
            GiftCard.expires_at <= now,
        )
        .order_by(GiftCard.id)
    ).all()
    expired = 0
    for card_id, account_id in due:
        account = lock_account(db, account_id, skip_locked=True)
        if account is None:
            continue
        card = db.get(GiftCard, card_id, populate_existing=True)
        assert card is not None
        if card.expired_at is not None:  # another worker expired it since we looked
            continue
        if account.balance:
            post(
                db,
                program_id=program_id,
                account=account,
                kind=TxKind.EXPIRE,
                amount=-account.balance,
                counter_account_id=system_account(
                    db, program_id, AccountKind.BREAKAGE, card.currency, now
                ),
                now=now,
                reason=f"gift card expired at {card.expires_at}",
                actor="job:giftcards.expire",
            )
        card.expired_at = now
        expired += 1
    db.flush()
    return expired


# --- refunds ----------------------------------------------------------------------------------


def refunded_so_far(db: Session, *, spend_transaction_id: int) -> Decimal:
    total = db.scalar(
        select(func.sum(MoneyTransaction.amount)).where(
            MoneyTransaction.refunds_id == spend_transaction_id
        )
    )
    return total if total is not None else Decimal(0)


def refund(
    db: Session,
    *,
    program_id: int,
    spend_transaction_id: int,
    amount: object,
    idempotency_key: str,
    now: datetime,
    currency: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> Move:
    """Gives back (part of) a spend to the card or wallet it came from (spent → account).

    Partial refunds add up to the spend at most; a closed or expired card takes no refund.
    """
    key = require_key(idempotency_key)
    spend = db.scalar(
        select(MoneyTransaction).where(
            MoneyTransaction.id == spend_transaction_id,
            MoneyTransaction.program_id == program_id,
            MoneyTransaction.kind == TxKind.SPEND.value,
        )
    )
    if spend is None:
        raise NotFound(f"spend {spend_transaction_id} does not exist", field="spend_transaction_id")
    value = parse_amount(amount, currency=spend.currency, given_currency=currency)
    request = content_hash({"kind": "refund", "spend": spend.id, "amount": value})
    # The account's lock also serialises refunds of one spend, so their sum is read exactly.
    account = lock_account(db, spend.account_id)
    first = replay(
        db, program_id=program_id, key=key, request_hash=request, field="idempotency_key"
    )
    if first is not None:
        return first
    card = db.scalar(select(GiftCard).where(GiftCard.account_id == account.id))
    if card is not None:
        db.refresh(card)
        require_usable(status=card.status, expires_at=card.expires_at, now=now, spending=False)
    left = refundable(
        spent=spend.amount, refunded=refunded_so_far(db, spend_transaction_id=spend.id)
    )
    if value > left:
        raise ValidationError(
            f"is more than what is left to refund of spend {spend.id} ({left} {spend.currency})",
            field="amount",
            code="refund_exceeds_spend",
        )
    return post(
        db,
        program_id=program_id,
        account=account,
        kind=TxKind.REFUND,
        amount=value,
        counter_account_id=system_account(db, program_id, AccountKind.SPENT, account.currency, now),
        now=now,
        reason=reason or f"refund of spend {spend.id}",
        actor=actor,
        idempotency_key=key,
        request_hash=request,
        refunds_id=spend.id,
    )


# --- wallets ----------------------------------------------------------------------------------


def credit_wallet(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    amount: Decimal,
    reference: str,
    reason: str,
    now: datetime,
) -> Move:
    """Credits value given (cashback, goodwill) to the member's wallet in the program currency,
    opening the wallet on first credit; the same `reference` twice credits once."""
    key = CREDIT_KEY_PREFIX + require_key(reference, field="reference")
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationError(
            f"must be at most {MAX_KEY_LENGTH - len(CREDIT_KEY_PREFIX)} characters",
            field="reference",
        )
    if not reason.strip():
        raise ValidationError("is required", field="reason")
    program = programs.get(db, program_id=program_id)
    member = members.get(db, program_id=program_id, member_id=member_id)
    if member.status == "closed":
        raise InvalidState(f"member {member_id} is closed", field="member_id")
    value = parse_amount(amount, currency=program.currency, given_currency=None)
    request = content_hash({"kind": "credit", "member": member_id, "amount": value})
    wallet = wallet_account(
        db,
        program_id=program_id,
        member_id=member_id,
        currency=program.currency,
        now=now,
        create=True,
    )
    assert wallet is not None
    first = replay(db, program_id=program_id, key=key, request_hash=request, field="reference")
    if first is not None:
        return first
    return post(
        db,
        program_id=program_id,
        account=wallet,
        kind=TxKind.CREDIT,
        amount=value,
        counter_account_id=system_account(
            db, program_id, AccountKind.GRANTED, program.currency, now
        ),
        now=now,
        reason=reason,
        idempotency_key=key,
        request_hash=request,
    )


def spend_wallet(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    amount: object,
    idempotency_key: str,
    now: datetime,
    currency: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> Move:
    """Pays `amount` from an active member's wallet (wallet → spent)."""
    key = require_key(idempotency_key)
    program = programs.get(db, program_id=program_id)
    member = members.get(db, program_id=program_id, member_id=member_id)
    wallet_currency = currency if currency is not None else program.currency
    require_currency(wallet_currency)
    value = parse_amount(amount, currency=wallet_currency, given_currency=None)
    request = content_hash(
        {"kind": "spend", "member": member_id, "amount": value, "currency": wallet_currency}
    )
    wallet = wallet_account(
        db,
        program_id=program_id,
        member_id=member_id,
        currency=wallet_currency,
        now=now,
        create=False,
    )
    if wallet is None:  # so no spend of it either: nothing to replay
        raise InsufficientFunds(
            f"is more than the balance (the member has no {wallet_currency} wallet)", field="amount"
        )
    return _spend(
        db,
        program_id=program_id,
        account=wallet,
        value=value,
        key=key,
        request=request,
        now=now,
        reason=reason or "paid from the wallet",
        actor=actor,
        usable=lambda: members.require_active(member),
    )


def wallets(db: Session, *, program_id: int, member_id: int) -> list[MoneyAccount]:
    """The member's wallets, one per currency (none before the first credit)."""
    members.get(db, program_id=program_id, member_id=member_id)
    return list(
        db.scalars(
            select(MoneyAccount)
            .where(
                MoneyAccount.program_id == program_id,
                MoneyAccount.member_id == member_id,
                MoneyAccount.kind == AccountKind.WALLET.value,
            )
            .order_by(MoneyAccount.currency)
        )
    )


def history(
    db: Session, *, account_ids: Sequence[int], limit: int = 50, before_id: int | None = None
) -> list[MoneyTransaction]:
    """The transactions of the accounts, newest first (`before_id` pages on)."""
    statement = select(MoneyTransaction).where(MoneyTransaction.account_id.in_(account_ids))
    if before_id is not None:
        statement = statement.where(MoneyTransaction.id < before_id)
    return list(db.scalars(statement.order_by(MoneyTransaction.id.desc()).limit(limit)))
