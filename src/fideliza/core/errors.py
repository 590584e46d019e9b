"""Errors with stable codes that name the field in error and the problem."""

from __future__ import annotations


class FidelizaError(Exception):
    """Base error: a stable `code`, an optional `field` and a human message."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "field": self.field, "message": self.message}


class ValidationError(FidelizaError):
    """The input is malformed: a missing, ill-typed or out-of-range field."""

    code = "validation_error"
    status = 422


class NotFound(FidelizaError):
    """The object does not exist (or is not visible in this program)."""

    code = "not_found"
    status = 404


class Conflict(FidelizaError):
    """The request contradicts the current state (e.g. an idempotency key reused)."""

    code = "conflict"
    status = 409


class IdempotencyError(FidelizaError):
    """The same idempotency key was used with different content."""

    code = "idempotency_error"
    status = 422


class InsufficientPoints(FidelizaError):
    """The member does not have enough available points."""

    code = "insufficient_points"
    status = 409


class InvalidState(FidelizaError):
    """The object's state does not allow the operation (closed member, captured hold, …)."""

    code = "invalid_state"
    status = 409
