"""A member's timeline: purchases, returns, points, redemptions, surveys and cases, newest first.

The "know your customer" view: each source reads one page of its own table (limited and
ordered by time and id, after the cursor), and the pages are merged; a member's whole
history is never loaded.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from fideliza.members import service as members
from fideliza.timeline.domain import (
    TimelinePage,
    decode_cursor,
    merge_newest_first,
    parse_kinds,
    require_limit,
)
from fideliza.timeline.sources import Page, Source, installed

SOURCES: list[Source] = installed()


def kinds() -> list[str]:
    """The kinds of items the timeline can show (the installed sources)."""
    return [source.kind for source in SOURCES]


def member_timeline(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    before: str | None = None,
    limit: int = 50,
    kinds: Iterable[str] | None = None,
) -> TimelinePage:
    """One page of the member's timeline, newest first; `before` is the previous `next_cursor`."""
    limit = require_limit(limit)
    chosen = set(parse_kinds(kinds, [source.kind for source in SOURCES]))
    position = decode_cursor(before)
    member = members.get(db, program_id=program_id, member_id=member_id)
    page = Page(member_id=member.id, before=position, limit=limit + 1)
    streams = [source.read(db, page) for source in SOURCES if source.kind in chosen]
    return merge_newest_first(streams, limit)
