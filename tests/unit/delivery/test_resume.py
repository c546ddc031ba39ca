"""`resume.plan`, one row per branch: where a channel continues after a position, given
the page of history read after it, and the reset the client is owed."""

from __future__ import annotations

import pytest

from hub.broker import Entry, HistoryPage
from hub.delivery.cursor import NOWHERE, Position
from hub.delivery.reasons import Reset
from hub.delivery.resume import now, plan

EPOCH = 7


def _page(
    top: int, first: int | None = None, anchor: int | None = None, epoch: int = EPOCH
) -> HistoryPage:
    """A page of `epoch` whose entries run from `first` to `top` (None: no entries)."""
    offsets = range(first, top + 1) if first is not None else ()
    entries = [Entry.create(offset, "message", f"e{offset}", 100 + offset) for offset in offsets]
    return HistoryPage(epoch, top, entries, anchor)


@pytest.mark.parametrize(
    ("position", "page", "earliest", "expected"),
    [
        pytest.param(
            Position(EPOCH, 3, 103),
            _page(5, 4, anchor=103),
            False,
            (Position(EPOCH, 3, 103), None),
            id="follows on",
        ),
        pytest.param(
            Position(EPOCH, 5),
            _page(5, anchor=105),
            False,
            (Position(EPOCH, 5, 105), None),
            id="a cursor without a stamp gains the one at its offset",
        ),
        pytest.param(NOWHERE, _page(0, epoch=0), False, (NOWHERE, None), id="epoch 0, never seen"),
        pytest.param(
            Position(EPOCH, 3, 103),
            _page(0, epoch=0),
            False,
            (NOWHERE, Reset.TRIMMED),
            id="epoch 0: the channel expired or was wiped",
        ),
        pytest.param(
            Position(EPOCH, 3, 103),
            _page(5, 4, epoch=9),
            False,
            (Position(9, 0), Reset.TRIMMED),
            id="wiped and recreated: starts over (read again from 0)",
        ),
        pytest.param(
            NOWHERE,
            _page(2, 1, epoch=9),
            False,
            (Position(9, 0), None),
            id="a new epoch where nothing was seen before",
        ),
        pytest.param(
            Position(EPOCH, 10, 110),
            _page(5, anchor=105),
            False,
            (Position(EPOCH, 0), Reset.LOST),
            id="ahead of the top: starts over",
        ),
        pytest.param(
            Position(EPOCH, 3, 103),
            _page(10, 8),
            False,
            (Position(EPOCH, 7), Reset.TRIMMED),
            id="trimmed",
        ),
        pytest.param(
            Position(EPOCH, 3, 103),
            _page(10),
            False,
            (Position(EPOCH, 10), Reset.TRIMMED),
            id="trimmed, nothing left after it",
        ),
        pytest.param(NOWHERE, _page(10, 8), True, (Position(EPOCH, 7), None), id="earliest"),
        pytest.param(
            NOWHERE,
            _page(10, 8),
            False,
            (Position(EPOCH, 7), Reset.TRIMMED),
            id="from nothing, not earliest",
        ),
        pytest.param(
            Position(EPOCH, 4, 104),
            _page(12, 9, anchor=104),
            False,
            (Position(EPOCH, 8), Reset.TRIMMED),
            id="trimmed while paging: the next page does not follow the last entry sent",
        ),
        pytest.param(
            Position(EPOCH, 5, 105),
            _page(6, 6, anchor=999),
            False,
            (Position(EPOCH, 0), Reset.LOST),
            id="history lost after a failover: another entry at the offset; starts over",
        ),
        pytest.param(
            Position(EPOCH, 5, 105),
            _page(6, 6),
            False,
            (Position(EPOCH, 5, 105), None),
            id="no anchor (trimmed, or never stamped): not checked",
        ),
    ],
)
def test_plan(
    position: Position,
    page: HistoryPage,
    earliest: bool,
    expected: tuple[Position, Reset | None],
) -> None:
    assert plan(position, page, earliest) == expected


def test_a_start_over_planned_again_on_its_own_read_skips_only_what_is_gone() -> None:
    """The second plan of a start over: its gap is already told, so only the start moves."""
    start, reason = plan(Position(EPOCH, 9, 109), _page(5, anchor=105))
    assert (start, reason) == (Position(EPOCH, 0), Reset.LOST)
    assert plan(start, _page(5, 3))[0] == Position(EPOCH, 2)


def test_from_now_starts_at_the_top_with_its_stamp() -> None:
    assert now(HistoryPage(EPOCH, 5, [], 105)) == Position(EPOCH, 5, 105)
    assert now(HistoryPage(EPOCH, 5, [])) == Position(EPOCH, 5)
    assert now(HistoryPage(0, 0, [])) == NOWHERE


def test_reasons_are_their_wire_strings() -> None:
    assert [str(reason) for reason in Reset] == [
        "history_trimmed",
        "unknown_cursor",
        "history_lost",
    ]
