"""The timeline's merge and cursor, pure (no database): pages add up to the whole, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fideliza.core.errors import ValidationError
from fideliza.timeline.domain import (
    Position,
    TimelineItem,
    decode_cursor,
    encode_cursor,
    merge_newest_first,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
KINDS = ["case", "points", "purchase"]

rows = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(min_value=0, max_value=5)),
    max_size=40,
)


def _items(raw: list[tuple[str, int]]) -> list[TimelineItem]:
    # Ids unique per kind (as per table); times collide often, to exercise the tie-breaks.
    return [
        TimelineItem(kind=kind, id=index + 1, at=T0 + timedelta(minutes=minute), summary="")
        for index, (kind, minute) in enumerate(raw)
    ]


def _source(items: list[TimelineItem], kind: str, before: Position | None, limit: int) -> list:
    mine = [i for i in items if i.kind == kind and (before is None or i.position < before)]
    return sorted(mine, key=lambda i: i.position, reverse=True)[:limit]


@given(raw=rows, limit=st.integers(min_value=1, max_value=7))
def test_paging_through_merged_sources_yields_everything_once_in_order(
    raw: list[tuple[str, int]], limit: int
) -> None:
    items = _items(raw)
    expected = sorted(items, key=lambda i: i.position, reverse=True)
    seen: list[TimelineItem] = []
    before: Position | None = None
    for _ in range(len(items) + 2):
        streams = [_source(items, kind, before, limit + 1) for kind in KINDS]
        page = merge_newest_first(streams, limit)
        seen += page.items
        if page.next_cursor is None:
            break
        before = decode_cursor(page.next_cursor)
    assert seen == expected


@given(minute=st.integers(min_value=0, max_value=10**6), row_id=st.integers(1, 2**62))
def test_a_cursor_names_its_position_exactly(minute: int, row_id: int) -> None:
    position = Position(T0 + timedelta(minutes=minute, microseconds=7), "purchase", row_id)
    assert decode_cursor(encode_cursor(position)) == position


@pytest.mark.parametrize("cursor", ["", "abc", encode_cursor(Position(T0, "x", 1))[:-2], "dDF8"])
def test_a_cursor_not_ours_is_refused(cursor: str) -> None:
    with pytest.raises(ValidationError) as refused:
        decode_cursor(cursor)
    assert refused.value.field == "before"
