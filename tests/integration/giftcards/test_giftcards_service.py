"""Gift cards and wallets on real SQLite and PostgreSQL: each use case, its refusals, the check."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fideliza.core.errors import (
    IdempotencyError,
    InvalidState,
    NotFound,
    ValidationError,
)
from fideliza.giftcards import service as giftcards
from fideliza.giftcards.check import check_money_ledger
from fideliza.giftcards.domain import AccountKind, CardStatus, TxKind
from fideliza.giftcards.errors import CardNotAccepted, InsufficientFunds, RefusedBecause
from fideliza.giftcards.models import GiftCard, MoneyAccount, MoneyEntry, MoneyTransaction
from fideliza.members import service as members
from fideliza.programs.models import AuditLog, OutboxEvent, Program
from tests.factories import make_member, make_program

D = Decimal


def issue(db: Session, program: Program, now: datetime, **fields: Any) -> giftcards.IssuedCard:
    fields.setdefault("amount", D("50.00"))
    issued = giftcards.issue_card(db, program_id=program.id, now=now, actor="admin", **fields)
    db.commit()
    return issued


def balance_of(db: Session, program: Program, code: str, pin: str | None = None) -> Decimal:
    return giftcards.look_up(db, program_id=program.id, code=code, pin=pin).balance


def spend(
    db: Session, program: Program, code: str, amount: str, key: str, now: datetime, **kw: Any
) -> giftcards.Move:
    move = giftcards.spend_card(
        db,
        program_id=program.id,
        code=code,
        pin=kw.pop("pin", None),
        amount=D(amount),
        idempotency_key=key,
        now=now,
        **kw,
    )
    db.commit()
    return move


def system_total(db: Session, program: Program, kind: AccountKind) -> Decimal:
    total = db.scalar(
        select(func.sum(MoneyEntry.amount))
        .join(MoneyAccount, MoneyAccount.id == MoneyEntry.account_id)
        .where(MoneyAccount.program_id == program.id, MoneyAccount.kind == kind.value)
    )
    return total if total is not None else D(0)


@pytest.fixture
def program(db: Session, now: datetime) -> Program:
    made = make_program(db, now=now)
    db.commit()
    return made


# --- issue and look-up ------------------------------------------------------------------------


def test_issue_credits_the_card_from_issued_and_records_audit_and_event(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now, amount=D("25.50"))

    assert balance_of(db, program, issued.code) == D("25.50")
    assert issued.move.kind is TxKind.ISSUE and issued.move.balance_after == D("25.50")
    assert system_total(db, program, AccountKind.ISSUED) == D("-25.50")
    card = issued.card
    assert card.status == CardStatus.ACTIVE and card.currency == "EUR"
    # The code is not stored: only its hash and its last four characters.
    assert issued.code.replace("-", "") not in (card.code_hash, card.code_hint)
    assert issued.code.replace("-", "").endswith(card.code_hint)
    actions = db.scalars(select(AuditLog.action).where(AuditLog.program_id == program.id)).all()
    assert "fideliza.giftcards.issued" in actions
    event = db.scalar(
        select(OutboxEvent).where(
            OutboxEvent.program_id == program.id, OutboxEvent.event_type == "giftcard.issued"
        )
    )
    assert event is not None and event.payload["amount"] == "25.50"
    assert check_money_ledger(db, program_id=program.id) == []


def test_look_up_accepts_the_code_as_people_type_it(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now)
    typed = issued.code.lower().replace("-", " ")
    assert balance_of(db, program, typed) == D("50.00")


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"amount": D("0")}, "amount", "positive"),
        ({"amount": D("-5")}, "amount", "positive"),
        ({"amount": D("10.001")}, "amount", "more decimals than EUR"),
        ({"amount": "ten"}, "amount", "not a decimal"),
        ({"amount": 10.5}, "amount", "float"),
        ({"currency": "USD"}, "currency", "must be EUR"),
        ({"currency": "usd"}, "currency", "ISO 4217"),
        ({"pin": "12"}, "pin", "4 to 8 digits"),
        ({"pin": "12a4"}, "pin", "4 to 8 digits"),
        ({"member_id": 987654321}, "member_id", "does not exist"),
    ],
)
def test_issue_refuses_bad_input_naming_the_field_and_writes_nothing(
    db: Session, program: Program, now: datetime, fields: dict[str, Any], field: str, fragment: str
) -> None:
    fields.setdefault("amount", D("10"))
    with pytest.raises((ValidationError, NotFound)) as caught:
        giftcards.issue_card(db, program_id=program.id, now=now, **fields)
    assert caught.value.field == field
    assert fragment in caught.value.message
    db.rollback()
    assert (
        db.scalar(
            select(func.count()).select_from(GiftCard).where(GiftCard.program_id == program.id)
        )
        == 0
    )


def test_issue_refuses_an_expiry_in_the_past(db: Session, program: Program, now: datetime) -> None:
    with pytest.raises(ValidationError) as caught:
        giftcards.issue_card(db, program_id=program.id, now=now, amount=D("5"), expires_at=now)
    assert caught.value.field == "expires_at"


def test_unknown_code_and_wrong_pin_look_the_same_to_a_till(
    db: Session, program: Program, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    issued = issue(db, program, now, pin="4321")
    other = issue(db, program, now)  # a real code of the program…
    db.execute(update(GiftCard).where(GiftCard.id == other.card.id).values(code_hash="0" * 64))
    db.commit()  # …that no longer matches: a well-formed but unknown code

    caplog.set_level(logging.INFO, logger="fideliza.giftcards")
    with pytest.raises(CardNotAccepted) as wrong_pin:
        giftcards.look_up(db, program_id=program.id, code=issued.code, pin="1111")
    with pytest.raises(CardNotAccepted) as no_pin:
        giftcards.look_up(db, program_id=program.id, code=issued.code, pin=None)
    with pytest.raises(CardNotAccepted) as unknown:
        giftcards.look_up(db, program_id=program.id, code=other.code, pin="4321")

    # What a till is told is identical…
    assert {
        (e.value.code, e.value.field, e.value.message) for e in (wrong_pin, no_pin, unknown)
    } == {("card_not_accepted", "code", "the card code or its PIN is not valid")}
    # …while an administrator can tell why.
    assert wrong_pin.value.because is RefusedBecause.WRONG_PIN
    assert unknown.value.because is RefusedBecause.UNKNOWN_CODE
    assert "unknown code" in caplog.text and "wrong PIN" in caplog.text
    assert balance_of(db, program, issued.code, "4321") == D("50.00")


def test_a_typo_is_caught_before_any_look_up(db: Session, program: Program, now: datetime) -> None:
    issued = issue(db, program, now)
    body = issued.code.replace("-", "")
    swapped = body[1] + body[0] + body[2:] if body[0] != body[1] else body[:-1] + "22"
    with pytest.raises(ValidationError) as caught:
        giftcards.look_up(db, program_id=program.id, code=swapped, pin=None)
    assert caught.value.code == "malformed_code" and caught.value.field == "code"


def test_a_code_of_another_program_is_unknown(db: Session, program: Program, now: datetime) -> None:
    issued = issue(db, program, now)
    elsewhere = make_program(db, now=now)
    db.commit()
    with pytest.raises(CardNotAccepted):
        giftcards.look_up(db, program_id=elsewhere.id, code=issued.code, pin=None)


# --- spend, top up, idempotency ---------------------------------------------------------------


def test_spend_takes_money_to_spent_and_never_more_than_the_balance(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now, amount=D("30.00"))

    move = spend(db, program, issued.code, "12.35", "till-1", now)
    assert move.kind is TxKind.SPEND and move.amount == D("12.35")
    assert move.balance_after == D("17.65") == balance_of(db, program, issued.code)

    with pytest.raises(InsufficientFunds) as caught:
        spend(db, program, issued.code, "17.66", "till-2", now)
    assert caught.value.field == "amount" and "17.65" in caught.value.message
    db.rollback()

    spend(db, program, issued.code, "17.65", "till-3", now)
    assert balance_of(db, program, issued.code) == D("0.00")
    assert system_total(db, program, AccountKind.SPENT) == D("30.00")
    assert check_money_ledger(db, program_id=program.id) == []


def test_same_key_same_content_replays_other_content_is_refused(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now, amount=D("30.00"))
    first = spend(db, program, issued.code, "10.00", "till-9", now)
    again = spend(db, program, issued.code, "10.00", "till-9", now + timedelta(minutes=5))

    assert again.replayed and not first.replayed
    assert again.transaction_id == first.transaction_id
    assert again.balance_after == first.balance_after == D("20.00")
    assert balance_of(db, program, issued.code) == D("20.00")  # spent once

    with pytest.raises(IdempotencyError) as caught:
        spend(db, program, issued.code, "11.00", "till-9", now)
    assert caught.value.field == "idempotency_key"
    db.rollback()
    assert balance_of(db, program, issued.code) == D("20.00")


def test_a_key_is_required_for_every_till_write(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now)
    with pytest.raises(ValidationError) as caught:
        spend(db, program, issued.code, "1.00", " ", now)
    assert caught.value.field == "idempotency_key"


def test_currency_mismatch_and_extra_decimals_are_refused(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now)
    with pytest.raises(ValidationError) as currency:
        spend(db, program, issued.code, "1.00", "k1", now, currency="USD")
    assert currency.value.field == "currency" and "EUR" in currency.value.message
    with pytest.raises(ValidationError) as decimals:
        spend(db, program, issued.code, "1.005", "k2", now)
    assert decimals.value.field == "amount"


def test_a_zero_decimal_currency_refuses_cents(db: Session, now: datetime) -> None:
    yen = make_program(db, now=now, currency="JPY")
    db.commit()
    issued = issue(db, yen, now, amount=D("5000"))
    with pytest.raises(ValidationError) as caught:
        spend(db, yen, issued.code, "10.50", "k", now)
    assert caught.value.field == "amount" and "JPY" in caught.value.message
    db.rollback()
    assert spend(db, yen, issued.code, "1000", "k2", now).balance_after == D("4000")


def test_top_up_adds_sold_value(db: Session, program: Program, now: datetime) -> None:
    issued = issue(db, program, now, amount=D("10.00"), pin="1234")
    move = giftcards.top_up(
        db,
        program_id=program.id,
        code=issued.code,
        pin="1234",
        amount=D("15.00"),
        idempotency_key="topup-1",
        now=now,
    )
    db.commit()
    assert move.kind is TxKind.TOP_UP and move.balance_after == D("25.00")
    assert system_total(db, program, AccountKind.ISSUED) == D("-25.00")
    with pytest.raises(CardNotAccepted):
        giftcards.top_up(
            db,
            program_id=program.id,
            code=issued.code,
            pin="9999",
            amount=D("1"),
            idempotency_key="topup-2",
            now=now,
        )


def test_pin_protected_card_spends_only_with_its_pin(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now, pin="123456")
    with pytest.raises(CardNotAccepted):
        spend(db, program, issued.code, "5.00", "p1", now, pin="654321")
    db.rollback()
    assert spend(db, program, issued.code, "5.00", "p2", now, pin="123456").balance_after == D(
        "45.00"
    )


# --- status -----------------------------------------------------------------------------------


def test_frozen_card_refuses_spending_until_unfrozen_and_closed_is_final(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now, amount=D("10.00"))
    first = spend(db, program, issued.code, "4.00", "s1", now)
    giftcards.set_status(
        db, program_id=program.id, card_id=issued.card.id, status="frozen", now=now, actor="admin"
    )
    db.commit()

    with pytest.raises(InvalidState) as frozen:
        spend(db, program, issued.code, "1.00", "s2", now)
    assert frozen.value.code == "card_frozen"
    db.rollback()
    # A retry of a spend made before the freeze still gets its first answer.
    assert spend(db, program, issued.code, "4.00", "s1", now).transaction_id == first.transaction_id
    # A refund puts money in: a frozen card takes it.
    giftcards.refund(
        db,
        program_id=program.id,
        spend_transaction_id=first.transaction_id,
        amount=D("4.00"),
        idempotency_key="r1",
        now=now,
    )
    db.commit()

    with pytest.raises(InvalidState) as not_empty:
        giftcards.set_status(
            db, program_id=program.id, card_id=issued.card.id, status="closed", now=now
        )
    assert not_empty.value.field == "status" and "10.00" in not_empty.value.message
    db.rollback()

    giftcards.set_status(
        db, program_id=program.id, card_id=issued.card.id, status="active", now=now
    )
    spend(db, program, issued.code, "10.00", "s3", now)
    giftcards.set_status(
        db, program_id=program.id, card_id=issued.card.id, status="closed", now=now
    )
    db.commit()
    with pytest.raises(InvalidState) as closed:
        giftcards.set_status(
            db, program_id=program.id, card_id=issued.card.id, status="active", now=now
        )
    assert closed.value.code == "card_closed"
    with pytest.raises(ValidationError) as bad:
        giftcards.set_status(
            db, program_id=program.id, card_id=issued.card.id, status="lost", now=now
        )
    assert bad.value.field == "status"


# --- refunds ----------------------------------------------------------------------------------


def test_partial_refunds_add_up_to_the_spend_exactly(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now, amount=D("50.00"))
    paid = spend(db, program, issued.code, "10.00", "pay", now)

    def refund(amount: str, key: str) -> giftcards.Move:
        move = giftcards.refund(
            db,
            program_id=program.id,
            spend_transaction_id=paid.transaction_id,
            amount=D(amount),
            idempotency_key=key,
            now=now,
        )
        db.commit()
        return move

    assert refund("3.33", "r1").balance_after == D("43.33")
    assert refund("3.33", "r2").refunds_id == paid.transaction_id
    assert refund("3.33", "r1").replayed  # a retry, not a third refund
    with pytest.raises(ValidationError) as too_much:
        refund("3.35", "r3")
    assert too_much.value.code == "refund_exceeds_spend" and "3.34" in too_much.value.message
    db.rollback()
    assert refund("3.34", "r4").balance_after == D("50.00")
    with pytest.raises(ValidationError):
        refund("0.01", "r5")
    db.rollback()
    assert giftcards.refunded_so_far(db, spend_transaction_id=paid.transaction_id) == D("10.00")
    assert system_total(db, program, AccountKind.SPENT) == D("0.00")
    assert check_money_ledger(db, program_id=program.id) == []


def test_refund_must_reference_a_spend_of_this_program(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now)
    with pytest.raises(NotFound) as caught:
        giftcards.refund(
            db,
            program_id=program.id,
            spend_transaction_id=issued.move.transaction_id,
            amount=D("1"),
            idempotency_key="x",
            now=now,
        )
    assert caught.value.field == "spend_transaction_id"  # an issue is no spend
    paid = spend(db, program, issued.code, "5.00", "pay", now)
    elsewhere = make_program(db, now=now)
    db.commit()
    with pytest.raises(NotFound):
        giftcards.refund(
            db,
            program_id=elsewhere.id,
            spend_transaction_id=paid.transaction_id,
            amount=D("1"),
            idempotency_key="y",
            now=now,
        )


# --- expiry -----------------------------------------------------------------------------------


def test_expired_card_cannot_be_spent_and_the_job_moves_what_is_left_to_breakage_once(
    db: Session, program: Program, now: datetime
) -> None:
    expires = now + timedelta(days=30)
    issued = issue(db, program, now, amount=D("20.00"), expires_at=expires)
    keep = issue(db, program, now, amount=D("5.00"), expires_at=now + timedelta(days=60))
    paid = spend(db, program, issued.code, "7.50", "pay", now)

    later = expires + timedelta(seconds=1)
    with pytest.raises(InvalidState) as expired:
        spend(db, program, issued.code, "1.00", "late", later)
    assert expired.value.code == "card_expired"
    db.rollback()
    with pytest.raises(InvalidState):  # nor refunded into: its value is breakage now
        giftcards.refund(
            db,
            program_id=program.id,
            spend_transaction_id=paid.transaction_id,
            amount=D("1"),
            idempotency_key="late-refund",
            now=later,
        )
    db.rollback()

    assert giftcards.expire_due(db, program_id=program.id, now=later) == 1
    db.commit()
    assert giftcards.expire_due(db, program_id=program.id, now=later + timedelta(days=1)) == 0
    db.commit()
    assert system_total(db, program, AccountKind.BREAKAGE) == D("12.50")
    assert giftcards.card_view(db, card=issued.card).balance == D("0.00")
    assert giftcards.card_view(db, card=keep.card).balance == D("5.00")
    assert check_money_ledger(db, program_id=program.id) == []


# --- wallets ----------------------------------------------------------------------------------


def test_credit_wallet_opens_the_wallet_and_is_idempotent_by_reference(
    db: Session, program: Program, now: datetime
) -> None:
    member = make_member(db, program=program, now=now)
    db.commit()
    assert giftcards.wallets(db, program_id=program.id, member_id=member.id) == []

    def credit(amount: str, reference: str) -> giftcards.Move:
        move = giftcards.credit_wallet(
            db,
            program_id=program.id,
            member_id=member.id,
            amount=D(amount),
            reference=reference,
            reason="cashback",
            now=now,
        )
        db.commit()
        return move

    assert credit("2.50", "reward-1").balance_after == D("2.50")
    assert credit("2.50", "reward-1").replayed
    assert credit("1.25", "reward-2").balance_after == D("3.75")
    with pytest.raises(IdempotencyError) as caught:
        credit("9.99", "reward-1")
    assert caught.value.field == "reference"
    db.rollback()

    [wallet] = giftcards.wallets(db, program_id=program.id, member_id=member.id)
    assert (wallet.currency, wallet.balance) == ("EUR", D("3.75"))
    assert system_total(db, program, AccountKind.GRANTED) == D("-3.75")
    kinds = [tx.kind for tx in giftcards.history(db, account_ids=[wallet.id])]
    assert kinds == ["credit", "credit"]


def test_wallet_spend_and_refund(db: Session, program: Program, now: datetime) -> None:
    member = make_member(db, program=program, now=now)
    db.commit()
    with pytest.raises(InsufficientFunds):  # no wallet yet: nothing to spend
        giftcards.spend_wallet(
            db,
            program_id=program.id,
            member_id=member.id,
            amount=D("1"),
            idempotency_key="w0",
            now=now,
        )
    giftcards.credit_wallet(
        db,
        program_id=program.id,
        member_id=member.id,
        amount=D("10.00"),
        reference="cb",
        reason="cashback",
        now=now,
    )
    db.commit()

    paid = giftcards.spend_wallet(
        db,
        program_id=program.id,
        member_id=member.id,
        amount=D("6.00"),
        idempotency_key="w1",
        now=now,
    )
    db.commit()
    assert paid.balance_after == D("4.00")
    with pytest.raises(InsufficientFunds):
        giftcards.spend_wallet(
            db,
            program_id=program.id,
            member_id=member.id,
            amount=D("4.01"),
            idempotency_key="w2",
            now=now,
        )
    db.rollback()
    back = giftcards.refund(
        db,
        program_id=program.id,
        spend_transaction_id=paid.transaction_id,
        amount=D("6.00"),
        idempotency_key="w3",
        now=now,
    )
    db.commit()
    assert back.account_id == paid.account_id and back.balance_after == D("10.00")

    members.change_status(
        db,
        program=program,
        member=member,
        status="suspended",
        now=now,
        reason="fraud check",
    )
    db.commit()
    with pytest.raises(InvalidState):
        giftcards.spend_wallet(
            db,
            program_id=program.id,
            member_id=member.id,
            amount=D("1"),
            idempotency_key="w4",
            now=now,
        )
    db.rollback()
    assert check_money_ledger(db, program_id=program.id) == []


# --- the guarantees under the service ---------------------------------------------------------


def test_the_database_refuses_a_negative_cached_balance(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now, amount=D("1.00"))
    with pytest.raises(IntegrityError):
        db.execute(
            update(MoneyAccount)
            .where(MoneyAccount.id == issued.card.account_id)
            .values(balance=D("-0.01"))
        )
        db.flush()
    db.rollback()


def test_check_reports_a_tampered_balance_and_an_unbalanced_transaction(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now, amount=D("10.00"))
    db.execute(
        update(MoneyAccount)
        .where(MoneyAccount.id == issued.card.account_id)
        .values(balance=D("11.00"))
    )
    db.execute(
        update(MoneyEntry)
        .where(
            MoneyEntry.transaction_id == issued.move.transaction_id,
            MoneyEntry.account_id != issued.card.account_id,
        )
        .values(amount=D("-9.00"))
    )
    found = {(d.check, d.expected, d.found) for d in check_money_ledger(db, program_id=program.id)}
    db.rollback()
    assert ("cached balance equals the sum of entries", D("10.00"), D("11.00")) in found
    assert ("transaction entries sum to zero", D(0), D("1.00")) in found
    assert check_money_ledger(db, program_id=program.id) == []


def test_transactions_and_entries_are_never_rewritten(
    db: Session, program: Program, now: datetime
) -> None:
    issued = issue(db, program, now, amount=D("10.00"))
    spend(db, program, issued.code, "4.00", "a", now)
    spend(db, program, issued.code, "4.00", "a", now)  # replay
    giftcards.set_status(
        db, program_id=program.id, card_id=issued.card.id, status="frozen", now=now
    )
    db.commit()
    rows = db.execute(
        select(MoneyTransaction.kind, MoneyTransaction.amount, MoneyTransaction.balance_after)
        .where(MoneyTransaction.account_id == issued.card.account_id)
        .order_by(MoneyTransaction.id)
    ).all()
    assert [tuple(r) for r in rows] == [
        ("issue", D("10.00"), D("10.00")),
        ("spend", D("4.00"), D("6.00")),
    ]
    count = db.scalar(
        text(
            "SELECT COUNT(*) FROM money_entries e"
            " JOIN money_transactions t ON t.id = e.transaction_id WHERE t.account_id = :a"
        ),
        {"a": issued.card.account_id},
    )
    assert count == 4


def test_a_closed_member_gets_no_credit(db: Session, program: Program, now: datetime) -> None:
    member = make_member(db, program=program, now=now)
    members.change_status(
        db, program=program, member=member, status="closed", reason="left", now=now
    )
    db.commit()
    with pytest.raises(InvalidState) as caught:
        giftcards.credit_wallet(
            db,
            program_id=program.id,
            member_id=member.id,
            amount=D("1.00"),
            reference="late-cashback",
            reason="cashback",
            now=now,
        )
    assert caught.value.field == "member_id"
    db.rollback()
    assert giftcards.wallets(db, program_id=program.id, member_id=member.id) == []
