"""Surveys (NPS, CSAT) and their answers."""

from __future__ import annotations

from fastapi import APIRouter

from fideliza.api.errors import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1", tags=["surveys"], responses=PROBLEM_RESPONSES)
