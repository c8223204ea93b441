"""The worker's check on what faust delivers: a gap is rewound and its records read, a stalled
partition is read again, and neither loops (see suptech.detector.continuity)."""

from __future__ import annotations

from suptech.detector.continuity import DROP, GAP, OK, Continuity

TP = ("t.telemetry.data_access.v1", 3)


def test_records_in_order_pass_and_the_first_of_an_unread_partition_is_taken_as_it_comes() -> None:
    c = Continuity(stall_s=30)
    assert c.check(TP, 40, None) == OK  # never read: starts where the consumer does
    assert c.check(TP, 41, 41) == OK
    assert c.check(TP, 7, 42) == OK  # re-read after a rewind: the shard skips it
    assert c.rewinds == 0


def test_a_gap_is_rewound_once_and_the_records_past_it_wait_for_the_one_needed() -> None:
    c = Continuity(stall_s=30)
    assert c.check(TP, 2, 0) == GAP  # records 0 and 1 never came
    c.rewinding(TP, 0)
    # Records already fetched past the gap come again after the rewind: dropped, not rewound
    # again (one seek per gap, not one per record).
    assert c.check(TP, 3, 0) == DROP
    assert c.check(TP, 7, 0) == DROP
    assert c.check(TP, 0, 0) == OK
    assert c.check(TP, 2, 2) == OK
    # A later gap is a new one.
    assert c.check(TP, 9, 3) == GAP
    assert c.rewinds == 1


def test_a_gap_retention_made_is_taken_and_the_partition_goes_on() -> None:
    c = Continuity(stall_s=30)
    assert c.check(TP, 500, 120) == GAP
    c.accept_gap(TP)
    assert c.check(TP, 501, 501) == OK
    assert (c.gaps_accepted, c.rewinds) == (1, 0)


def test_a_partition_with_records_on_the_broker_that_delivers_none_is_stalled_once_a_period() -> (
    None
):
    c = Continuity(stall_s=30)
    assert not c.stalled(TP, 6, 12, now=100)
    assert not c.stalled(TP, 6, 12, now=129)
    assert c.stalled(TP, 6, 12, now=130)  # 30 s at 6 with 12 on the broker
    assert not c.stalled(TP, 6, 12, now=140)  # reported once, then again a period later
    assert c.stalled(TP, 6, 12, now=160)
    # Moving, or caught up, is no stall.
    assert not c.stalled(TP, 8, 12, now=200)
    assert not c.stalled(TP, 8, 12, now=229)
    assert not c.stalled(TP, 12, 12, now=400)
    assert not c.stalled(TP, 12, 15, now=401)


def test_a_partition_handed_over_is_forgotten() -> None:
    c = Continuity(stall_s=30)
    c.check(TP, 2, 0)
    c.rewinding(TP, 0)
    c.stalled(TP, 0, 5, now=0)
    c.forget({TP})
    assert c.check(TP, 3, 0) == GAP  # a new owner's gap, not the old rewind
    assert not c.stalled(TP, 0, 5, now=29)
