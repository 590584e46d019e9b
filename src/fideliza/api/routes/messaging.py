"""Personal messages: templates, triggers, sends."""

from __future__ import annotations

from fastapi import APIRouter

from fideliza.api.errors import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1", tags=["messaging"], responses=PROBLEM_RESPONSES)
