"""Gift cards and e-wallets."""

from __future__ import annotations

from fastapi import APIRouter

from fideliza.api.errors import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1", tags=["giftcards"], responses=PROBLEM_RESPONSES)
