"""Stable error codes of authentication and authorization."""

from __future__ import annotations

from typing import ClassVar

from fideliza.core.errors import FidelizaError


class Unauthenticated(FidelizaError):
    """No API key, or one that is malformed, unknown, revoked or expired."""

    code = "unauthenticated"
    status = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="fideliza"'}


class Forbidden(FidelizaError):
    """The API key is valid but its scopes do not allow the operation."""

    code = "forbidden"
    status = 403


class NotConfigured(FidelizaError):
    """A feature needs a setting the operator has not given (e.g. FIDELIZA_SECRET_KEY)."""

    code = "not_configured"
    status = 503
