"""Surveys (NPS, CSAT): definitions (admin), invitations and scores (read), and answers.

The answer routes (`/v1/survey-answers/{token}`) take no API key: the member's signed,
single-use link is the credential. They are rate-limited per client address instead.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the annotations of the
# dependency closures below, which name local variables.

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from fideliza.api.context import Call, Runtime, reader, runtime
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.ratelimit import RateLimited, TokenBuckets
from fideliza.api.validation import IdPath
from fideliza.apikeys.domain import Scope
from fideliza.db import unit_of_work
from fideliza.members import service as members
from fideliza.surveys import service as surveys
from fideliza.surveys.models import Survey, SurveyInvitation
from fideliza.surveys.schemas import AnswerIn, AnswerRead, InvitationRead, SurveyRead
from fideliza.surveys.scores import scores as compute_scores

router = APIRouter(prefix="/v1", tags=["surveys"], responses=PROBLEM_RESPONSES)
READ = reader()
ADMIN = writer(Scope.ADMIN)

Token = Annotated[str, Path(min_length=1, max_length=200, description="The link's token.")]


class SurveyPage(BaseModel):
    items: list[SurveyRead]


class InvitationPage(BaseModel):
    items: list[InvitationRead]


class ScoreRead(BaseModel):
    """A score (NPS −100…100, CSAT 0…100 %) with its 95 % interval and change since the last."""

    period: str
    group: str
    responses: int
    score: Decimal
    low: Decimal
    high: Decimal
    change: Decimal | None


class ScorePage(BaseModel):
    kind: str
    period: str
    by: str | None
    items: list[ScoreRead]


def survey_read(survey: Survey) -> SurveyRead:
    return SurveyRead(
        id=survey.id,
        code=survey.code,
        version=survey.version,
        kind=survey.kind,
        trigger=survey.trigger,
        active=survey.active,
        created_at=survey.created_at,
        definition=survey.definition,
    )


def invitation_read(found: SurveyInvitation) -> InvitationRead:
    return InvitationRead(
        id=found.id,
        survey_id=found.survey_id,
        survey_code=found.survey_code,
        member_id=found.member_id,
        trigger=found.trigger,
        source_ref=found.source_ref,
        locale=found.locale,
        created_at=found.created_at,
        expires_at=found.expires_at,
        answered_at=found.answered_at,
    )


@router.post("/surveys", status_code=201, response_model=SurveyRead)
def define_survey(body: dict[str, Any], call: Annotated[Write, Depends(ADMIN)]) -> Response:
    """Adds a survey, or a new version of one (the previous version stops sending)."""

    def work(db: Any) -> Response:
        survey = surveys.define(
            db, program=call.program(db), definition=body, now=call.now, actor=call.caller.actor
        )
        return json_response(survey_read(survey), status=201)

    return call.run(work)


@router.get("/surveys", response_model=SurveyPage)
def list_surveys(
    call: Annotated[Call, Depends(READ)],
    include_retired: Annotated[bool, Query(description="Also the retired versions.")] = False,
) -> SurveyPage:
    """The program's surveys (current versions unless `include_retired`)."""
    with call.session() as db:
        found = surveys.list_surveys(
            db, program_id=call.program_id, include_retired=include_retired
        )
        return SurveyPage(items=[survey_read(s) for s in found])


@router.get("/surveys/scores", response_model=ScorePage)
def survey_scores(
    call: Annotated[Call, Depends(READ)],
    kind: Annotated[Literal["nps", "csat"], Query(description="nps or csat.")] = "nps",
    period: Annotated[
        Literal["month", "quarter"], Query(description="month or quarter (local calendar).")
    ] = "month",
    by: Annotated[
        Literal["channel", "store", "tier", "segment"] | None,
        Query(description="channel, store, tier or segment (default: overall)."),
    ] = None,
    since: Annotated[datetime | None, Query(description="Answers from this instant.")] = None,
    until: Annotated[datetime | None, Query(description="Answers before this instant.")] = None,
) -> ScorePage:
    """NPS or CSAT per period (and group), with a 95 % interval and the change per period."""
    with call.session() as db:
        rows = compute_scores(
            db,
            program=call.program(db),
            kind=kind,
            period=period,
            by=by,
            since=since,
            until=until,
        )
    return ScorePage(
        kind=kind,
        period=period,
        by=by,
        items=[
            ScoreRead(
                period=row.period,
                group=row.group,
                responses=row.score.responses,
                score=row.score.value,
                low=row.score.low,
                high=row.score.high,
                change=row.change,
            )
            for row in rows
        ],
    )


@router.get("/members/{member_id}/survey-invitations", response_model=InvitationPage)
def member_invitations(member_id: IdPath, call: Annotated[Call, Depends(READ)]) -> InvitationPage:
    """A member's survey invitations, newest first."""
    with call.session() as db:
        members.get(db, program_id=call.program_id, member_id=member_id)
        found = surveys.invitations_of(db, program_id=call.program_id, member_id=member_id)
        return InvitationPage(items=[invitation_read(i) for i in found])


# --- public: the member's link is the credential ------------------------------------------------


def _answer_buckets(request: Request, rt: Runtime) -> TokenBuckets | None:
    """The per-address bucket of the answer routes (made once per app; `None`: no limit)."""
    state = request.app.state
    if not hasattr(state, "survey_answer_buckets"):
        limit = rt.settings.sensitive_rate_limit
        state.survey_answer_buckets = (
            TokenBuckets(
                capacity=limit,
                window_seconds=rt.settings.sensitive_rate_window_seconds,
                now=lambda: rt.clock.now().timestamp(),
            )
            if limit
            else None
        )
    buckets: TokenBuckets | None = state.survey_answer_buckets
    return buckets


def answer_rate_limit(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> None:
    """Public routes: each client address spends a token per request."""
    buckets = _answer_buckets(request, rt)
    if buckets is None:
        return
    address = request.client.host if request.client else "unknown"
    wait = buckets.take(("survey_answers", address))
    if wait:
        raise RateLimited(
            f"too many survey requests from this address; retry in {wait} s", retry_after=wait
        )


def link_settings(rt: Runtime) -> surveys.SurveySettings:
    key = getattr(rt.settings, "secret_key", None)
    return surveys.SurveySettings(secret_key=key) if key else surveys.SurveySettings()


@router.get(
    "/survey-answers/{token}",
    dependencies=[Depends(answer_rate_limit)],
    openapi_extra={"security": []},
)
def open_survey(
    token: Token,
    rt: Annotated[Runtime, Depends(runtime)],
    locale: Annotated[str | None, Query(description="es, en or it (default: the member's).")] = (
        None
    ),
) -> dict[str, Any]:
    """The survey behind a link, in the member's language (no API key: the link is the key)."""
    with rt.factory() as db:
        return surveys.open_link(
            db, token=token, now=rt.clock.now(), settings=link_settings(rt), locale=locale
        )


@router.post(
    "/survey-answers/{token}",
    status_code=201,
    response_model=AnswerRead,
    dependencies=[Depends(answer_rate_limit)],
    openapi_extra={"security": []},
)
def answer_survey(
    token: Token, body: AnswerIn, rt: Annotated[Runtime, Depends(runtime)]
) -> AnswerRead:
    """Answers a survey once by its link; the program's rules may give points for it."""
    with unit_of_work(rt.factory) as db:
        outcome = surveys.answer(
            db, token=token, answers=body.answers, now=rt.clock.now(), settings=link_settings(rt)
        )
        response = outcome.response
        return AnswerRead(
            response_id=response.id,
            kind=response.kind,
            score=response.score,
            points_earned=outcome.points_earned,
        )
