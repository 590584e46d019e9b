"""The program's own survey answers and referral links feed the analytics, on both databases.

Without a file, `open_database` reads them where the program recorded them: answers through
the surveys service, links through the referrals service, in the program's local time.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fideliza import analytics as fa
from fideliza.db import make_engine, make_session_factory, unit_of_work
from fideliza.referrals import service as referrals
from fideliza.surveys import service as surveys
from tests.factories import make_member, make_program
from tests.integration.surveys.builders import SETTINGS, nps_survey

pytestmark = pytest.mark.filterwarnings("ignore:The 'future.infer_string' option")

# 23:30 UTC on 31 October is 00:30 on 1 November in Madrid: the local time is what counts.
ANSWERED = datetime(2025, 10, 31, 23, 30, 15, 600_000, tzinfo=UTC)
LINKED = datetime(2025, 10, 1, 9, 0, tzinfo=UTC)


def test_survey_answers_and_referrals_come_from_the_database(database_url: str) -> None:
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as db:
        program = make_program(db, now=LINKED, timezone="Europe/Madrid")
        ana = make_member(db, program=program, now=LINKED, external_id=f"ana-{program.id}")
        referrals.configure(
            db, program=program, config={"trigger": "enrolment", "referrer_points": 5}, now=LINKED
        )
        code = referrals.code_for(db, program=program, member=ana, now=LINKED)
        bea, _, _ = referrals.enrol_with_referral(
            db,
            program=program,
            data={"external_id": f"bea-{program.id}", "first_name": "Bea"},
            referral_code=code,
            now=LINKED,
        )
        surveys.define(db, program=program, definition=nps_survey(), now=LINKED)
        invitation = surveys.invite(
            db, program_id=program.id, survey_code="nps", member=bea, source_ref="x", now=ANSWERED
        )
        surveys.answer(
            db,
            token=surveys.token_of(invitation, settings=SETTINGS),
            answers={"recommend": 9},
            now=ANSWERED,
            settings=SETTINGS,
        )
        code_of_program = program.code
    engine.dispose()
    with fa.open_database(database_url, program=code_of_program, ledger=False) as data:
        assert data.surveys is not None and data.referrals is not None
        answers = data.surveys.to_pandas()
        links = data.referrals.to_pandas()
    assert answers.to_dict("records") == [
        {
            "member_id": f"bea-{answers.member_id[0].split('-')[1]}",
            "answered_at": datetime(2025, 11, 1, 0, 30, 15),
            "kind": "nps",
            "score": 9.0,
        }
    ]
    assert links[["member_id", "referrer_id"]].values.tolist() == [
        [answers.member_id[0], answers.member_id[0].replace("bea", "ana")]
    ]
    assert links.referred_at[0] == datetime(2025, 10, 1, 11, 0)  # 09:00 UTC, CEST


def test_a_program_without_answers_or_links_has_none(database_url: str) -> None:
    engine = make_engine(database_url)
    with unit_of_work(make_session_factory(engine)) as db:
        program = make_program(db, now=LINKED)
        code = program.code
    engine.dispose()
    with fa.open_database(database_url, program=code, ledger=False) as data:
        assert data.surveys is None and data.referrals is None
