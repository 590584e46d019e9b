"""Stable error codes of gift cards and wallets."""

from __future__ import annotations

from enum import StrEnum

from fideliza.core.errors import FidelizaError


class InsufficientFunds(FidelizaError):
    """The card or wallet holds less than the amount asked for."""

    code = "insufficient_funds"
    status = 409


class RefusedBecause(StrEnum):
    UNKNOWN_CODE = "unknown_code"
    WRONG_PIN = "wrong_pin"


class CardNotAccepted(FidelizaError):
    """A till gets one answer for an unknown code and a wrong PIN, so it cannot probe codes;
    `because` tells an administrator (CLI, audit) which it was."""

    code = "card_not_accepted"
    status = 422

    def __init__(self, because: RefusedBecause) -> None:
        super().__init__("the card code or its PIN is not valid", field="code")
        self.because = because
