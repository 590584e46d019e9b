"""Messaging errors with stable codes."""

from __future__ import annotations

from fideliza.core.errors import FidelizaError


class InvalidUnsubscribeLink(FidelizaError):
    """A forged, altered or unknown unsubscribe link (the same answer whichever, to tell
    nothing about which members exist)."""

    code = "invalid_link"
    status = 404
