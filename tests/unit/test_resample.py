"""Resampling zero-variance groups on an honest budget (resample.py): pytest tests/unit/test_resample.py"""

from __future__ import annotations

from two_grpo.data.batch import Rollout
from two_grpo.data.resample import fill_signal_groups, zero_var_groups


def group(gid: int, rewards: list[float]) -> list[Rollout]:
    return [Rollout(gid, gid, [1], [2, 3], "", "stop", reward=r) for r in rewards]


def test_zero_var_groups_in_order():
    rs = group(5, [1, 1]) + group(2, [1, 0]) + group(9, [0, 0])
    assert zero_var_groups(rs) == [5, 9]


def test_replaces_dead_groups_in_place_and_counts_every_draw():
    batch = group(0, [1, 1]) + group(1, [1, 0]) + group(2, [0, 0])
    calls = []

    def draw(n):  # first call: one dead and one live group; second call: one live group
        calls.append(n)
        if len(calls) == 1:
            return group(100, [0, 0]) + group(101, [0, 1])
        return group(102, [1, 0])

    out = fill_signal_groups(batch, draw, group_size=2, max_extra_rollouts=100)
    assert calls == [2, 1]
    assert [r.group_id for r in out.kept] == [101, 101, 1, 1, 102, 102]  # P = 3 groups, in the dead groups' slots
    assert len(out.drawn) == 6  # the discarded dead draw (group 100) is still counted
    assert (out.zero_var_groups_before, out.replaced_groups) == (2, 2)


def test_cap_on_extra_rollouts():
    batch = group(0, [1, 1]) + group(1, [0, 0]) + group(2, [0, 0])
    out = fill_signal_groups(batch, lambda n: sum((group(200 + j, [0, 0]) for j in range(n)), []), 2, 5)
    assert len(out.drawn) == 4  # two groups of 2 fit under the cap of 5; then the cap stops the loop
    assert out.kept == batch and out.replaced_groups == 0


def test_nothing_to_replace_draws_nothing():
    batch = group(0, [1, 0]) + group(1, [0, 1])
    out = fill_signal_groups(batch, lambda n: (_ for _ in ()).throw(AssertionError("drew")), 2, 10)
    assert out.kept == batch and out.drawn == []
