"""Complaints (cases) from open to resolution."""

from __future__ import annotations

from fastapi import APIRouter

from fideliza.api.errors import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1", tags=["cases"], responses=PROBLEM_RESPONSES)
