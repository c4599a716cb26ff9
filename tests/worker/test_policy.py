"""The worker's decisions, as the arithmetic they are (worker/policy.py)."""

from __future__ import annotations

import math

import pytest

from styxgrid.worker import policy


@pytest.mark.parametrize("slots, mean, lease", [
    (1, 10.0, 1),            # long tasks: no more than the slots
    (1, 0.05, 2),            # one task's worth of lease_ahead: one ahead
    (1, 0.01, 5),            # five fit: four ahead, a power of two
    (1, 0.0001, 9),          # capped at ahead_per_slot per slot
    (4, 0.001, 36),          # 4 slots, the cap 32 ahead
    (4, 0.02, 12),           # 10 fit: 8
    (2, 0.0, 18),            # a zero mean is not a division by zero
])
def test_lease_for(slots, mean, lease):
    assert policy.lease_for(slots, mean, 0.05, 8) == lease


def test_lease_is_slots_plus_a_power_of_two():
    for mean in (1e-5, 3e-4, 2e-3, 0.007, 0.03, 0.2, 4.0):
        ahead = policy.lease_for(3, mean, 0.05, 8) - 3
        assert ahead == 0 or ahead & (ahead - 1) == 0


def test_mean_run_moves_a_tenth_of_the_way():
    assert policy.mean_run(None, 2.0) == 2.0
    assert policy.mean_run(1.0, 2.0) == pytest.approx(1.1)


@pytest.mark.parametrize("pending, queued, lease, slots, changed, due", [
    (0, 0, 1, 1, False, False),     # nothing to say
    (0, 5, 9, 1, True, True),       # a new lease goes at once
    (1, 0, 1, 1, False, True),      # nothing waits here: report now
    (1, 3, 9, 1, False, False),     # tasks wait: gather half the lease ahead (4)
    (4, 3, 9, 1, False, True),
    (1, 1, 2, 1, False, True),      # a batch is at least one
])
def test_report_due(pending, queued, lease, slots, changed, due):
    assert policy.report_due(pending, queued, lease, slots, changed) is due


@pytest.mark.parametrize("sizes, room, most, n", [
    ([], 100, 10, 0),
    ([10, 10, 10], 100, 10, 3),
    ([60, 60], 100, 10, 1),
    ([500], 100, 10, 1),            # one too big still goes alone
    ([10] * 20, 1000, 5, 5),
    ([40, 40, 20, 1], 100, 10, 3),
])
def test_batch(sizes, room, most, n):
    assert policy.batch(sizes, room, most) == n


def test_own_load_decays_like_the_kernels():
    load = 0.0
    for _ in range(20):                       # 60 s of one task running, sampled every 3 s
        load = policy.own_load(load, 1, 3.0, 60.0)
    assert load == pytest.approx(1 - math.exp(-1))
    assert policy.own_load(1.0, 0, 60.0, 60.0) == pytest.approx(math.exp(-1))


@pytest.mark.parametrize("load, own, max_load, busy", [
    (5.0, 0.0, None, False),
    (0.5, 0.0, 1.0, False),
    (1.0, 0.0, 1.0, True),
    (3.0, 2.5, 1.0, False),         # most of the load is our own tasks
])
def test_owner_busy(load, own, max_load, busy):
    assert policy.owner_busy(load, own, max_load) is busy
