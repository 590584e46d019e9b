"""Stable error codes of survey links."""

from __future__ import annotations

from fideliza.core.errors import FidelizaError


class InvalidLink(FidelizaError):
    """A forged, altered or unknown survey link (the same answer whichever, to tell nothing)."""

    code = "invalid_link"
    status = 404


class LinkUsed(FidelizaError):
    """The survey link was answered already: a link is good for one answer."""

    code = "link_used"
    status = 409


class LinkExpired(FidelizaError):
    """The survey link is past its expiry."""

    code = "link_expired"
    status = 410


class MissingSecret(FidelizaError):
    """FIDELIZA_SECRET_KEY is not set (or too short) on this server: links cannot be signed."""

    code = "configuration_error"
    status = 500
