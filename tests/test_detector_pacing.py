"""The checkpoint pacer: routine checkpoints one at a time and within their share of the clock;
final ones (rebalance, shutdown) limited by the snapshot children alive, not by the clock."""

from __future__ import annotations

import asyncio

from suptech.detector.pacing import CheckpointPacer


def test_a_routine_checkpoint_waits_for_the_one_running_and_then_for_its_budget() -> None:
    pacer = CheckpointPacer(budget=0.2)
    assert pacer.may_start(100.0)
    pacer.started()
    assert not pacer.may_start(100.5)  # one at a time
    pacer.written()
    assert not pacer.may_start(101.0)  # written, not yet in Kafka
    pacer.finished(cost_s=2.0, now=102.0)
    # 2 s of checkpointing at a 20 % budget: 8 s before the next one may start.
    assert not pacer.may_start(109.9)
    assert pacer.may_start(110.0)


def test_small_state_is_not_held_back() -> None:
    pacer = CheckpointPacer(budget=0.2)
    pacer.started()
    pacer.written()
    pacer.finished(cost_s=0.01, now=50.0)
    assert pacer.may_start(50.05)


async def test_final_checkpoints_wait_for_a_snapshot_child_slot_only() -> None:
    pacer = CheckpointPacer(budget=0.2, final_children=2)
    pacer.started()
    pacer.started()
    waiter = asyncio.ensure_future(pacer.child_slot())
    await asyncio.sleep(0.05)
    assert not waiter.done()  # two children alive
    pacer.written()
    await asyncio.wait_for(waiter, 1.0)  # one exited: the next may fork, budget or not
    assert pacer.running == 2 and pacer.children == 1


def test_the_heap_is_frozen_each_time_the_state_grew_by_a_quarter() -> None:
    import gc

    from suptech.common.gc_tuning import StateFreezer

    freezer = StateFreezer(growth=1.25, floor=100)
    gc.unfreeze()
    try:
        assert not freezer.held(99)
        assert gc.get_freeze_count() == 0  # below the floor: nothing frozen
        assert freezer.held(100)
        frozen = gc.get_freeze_count()
        assert frozen > 0  # the heap as it was is out of every collection's walk
        gc.unfreeze()
        assert not freezer.held(124)  # not yet a quarter more
        assert gc.get_freeze_count() == 0
        assert freezer.held(125)
        assert gc.get_freeze_count() > 0
        # From a hundred to a million entities: about forty freezes in all, not one per tick.
        assert sum(freezer.held(n) for n in range(126, 1_000_000, 97)) < 45
    finally:
        gc.unfreeze()


def test_state_is_decoded_without_collections_and_frozen_once_the_last_decoder_is_done() -> None:
    import gc
    import threading

    from suptech.common.gc_tuning import bulk_load

    gc.unfreeze()
    try:
        inside = threading.Event()
        release = threading.Event()

        def other_shard() -> None:
            with bulk_load():
                inside.set()
                release.wait(5.0)

        t = threading.Thread(target=other_shard)
        with bulk_load():
            assert not gc.isenabled()  # a restore's objects are not walked while they pile up
            t.start()
            assert inside.wait(5.0)
        assert not gc.isenabled()  # the other shard is still decoding
        assert gc.get_freeze_count() == 0
        release.set()
        t.join(5.0)
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0  # decoded state is out of every later walk

        gc.disable()
        with bulk_load():
            pass
        assert not gc.isenabled()  # collection stays as the caller had it
    finally:
        gc.enable()
        gc.unfreeze()
