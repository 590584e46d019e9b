"""Referrals and lifecycle bonuses."""

from __future__ import annotations

from fastapi import APIRouter

from fideliza.api.errors import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1", tags=["referrals"], responses=PROBLEM_RESPONSES)
