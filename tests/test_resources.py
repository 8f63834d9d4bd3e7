"""Resource planning on node layouts (runners/plan/resources.py:plan): no Ray needed."""

from __future__ import annotations

import pytest

from segtune.runners.plan.resources import gpu_slots, plan
from segtune.trainers.base import ConfigError

HEAD = {"CPU": 8, "GPU": 0}  # a CPU-only head node, as on most clusters


def _plan(nodes, gpus=None, cpus=None, workers=None, samples=64):
    return plan(nodes, gpus_per_trial=gpus, cpus_per_trial=cpus, workers=workers, num_samples=samples)


def test_cpu_only_head_does_not_inflate_cpus_per_trial():
    # From cluster totals: (8 + 2 x 16) CPUs / 8 GPUs = 5 CPUs per trial, so 3 trials per 4-GPU node.
    plan_ = _plan([HEAD, {"CPU": 16, "GPU": 4}, {"CPU": 16, "GPU": 4}])
    assert plan_.gpus_per_trial == 1
    assert plan_.cpus_per_trial == 4
    assert plan_.node_slots == (0, 4, 4) and plan_.slots == 8
    assert plan_.max_concurrent == 8
    assert plan_.idle_gpu_slots == 0 and plan_.warning == ""
    assert (plan_.cluster_gpus, plan_.cluster_cpus) == (8, 40)
    assert plan_.workers == 3


def test_a_large_cpu_only_head_never_sets_cpus_per_trial():
    # From cluster totals: 72 CPUs / 4 GPUs = 18 CPUs per trial, which no GPU node has: all PENDING.
    plan_ = _plan([{"CPU": 64, "GPU": 0}, {"CPU": 8, "GPU": 4}])
    assert plan_.cpus_per_trial == 2
    assert plan_.node_slots == (0, 4)


def test_uneven_gpu_nodes_take_the_cpus_the_tightest_node_can_give():
    # 32 CPUs / 4 GPUs = 8 per slot, 10 CPUs / 2 GPUs = 5 per slot: 5 keeps both GPUs of the small node busy.
    plan_ = _plan([HEAD, {"CPU": 32, "GPU": 4}, {"CPU": 10, "GPU": 2}])
    assert plan_.cpus_per_trial == 5
    assert plan_.node_slots == (0, 4, 2)
    assert plan_.max_concurrent == 6
    assert plan_.workers == 4


@pytest.mark.parametrize(("gpus", "cpus", "slots"), [(0.5, 2, (0, 8, 8)), (0.25, 1, (0, 16, 16))])
def test_fractional_gpus_pack_several_trials_per_gpu(gpus, cpus, slots):
    plan_ = _plan([HEAD, {"CPU": 16, "GPU": 4}, {"CPU": 16, "GPU": 4}], gpus=gpus)
    assert plan_.gpus_per_trial == gpus
    assert plan_.cpus_per_trial == cpus
    assert plan_.node_slots == slots
    assert plan_.max_concurrent == sum(slots)


def test_fractional_gpus_with_fewer_cpus_than_slots_warn_of_idle_gpus():
    # 16 quarter-GPU slots but 8 CPUs: at least 1 CPU per trial, so half the slots cannot run.
    plan_ = _plan([{"CPU": 8, "GPU": 4}], gpus=0.25)
    assert plan_.cpus_per_trial == 1
    assert plan_.node_slots == (8,)
    assert plan_.idle_gpu_slots == 8
    assert "8 GPU slot(s) stay idle" in plan_.warning and "--cpus-per-trial" in plan_.warning
    # ...which a fractional CPU request fixes
    assert _plan([{"CPU": 8, "GPU": 4}], gpus=0.25, cpus=0.5).node_slots == (16,)


def test_a_fraction_that_does_not_divide_one_gpu_packs_per_gpu():
    # Ray takes 0.3 GPU from one GPU: 3 trials per GPU, 12 on 4 GPUs (not floor(4 / 0.3) = 13).
    assert gpu_slots(4, 0.3) == 12
    assert _plan([{"CPU": 64, "GPU": 4}], gpus=0.3).max_concurrent == 12


def test_whole_gpus_per_trial_span_a_nodes_gpus():
    plan_ = _plan([{"CPU": 24, "GPU": 8}, {"CPU": 24, "GPU": 3}], gpus=2)
    assert plan_.node_slots == (4, 1)
    assert plan_.cpus_per_trial == 6  # 24 CPUs / 4 slots on the first node


def test_more_cpus_than_gpus_gives_each_trial_its_share():
    plan_ = _plan([{"CPU": 64, "GPU": 2}])
    assert plan_.cpus_per_trial == 32
    assert plan_.max_concurrent == 2
    assert plan_.workers == 8  # capped: more loader processes than that rarely help one GPU


def test_cpu_only_cluster_runs_one_trial_per_cpu():
    plan_ = _plan([{"CPU": 2}, {"CPU": 3, "GPU": 0}])
    assert (plan_.gpus_per_trial, plan_.cpus_per_trial) == (0, 1)
    assert plan_.node_slots == (2, 3)
    assert plan_.max_concurrent == 5
    assert plan_.workers == 0


def test_cpu_trials_on_a_gpu_cluster_use_every_node():
    plan_ = _plan([HEAD, {"CPU": 16, "GPU": 4}], gpus=0, cpus=4)
    assert plan_.node_slots == (2, 4)
    assert plan_.max_concurrent == 6


def test_explicit_cpus_per_trial_limits_slots_per_node():
    plan_ = _plan([HEAD, {"CPU": 32, "GPU": 4}, {"CPU": 10, "GPU": 2}], cpus=6, workers=2)
    assert plan_.cpus_per_trial == 6
    assert plan_.node_slots == (0, 4, 1)  # the 10-CPU node runs one 6-CPU trial: one GPU idles
    assert plan_.idle_gpu_slots == 1
    assert plan_.workers == 2


def test_concurrency_is_capped_by_the_number_of_trials():
    assert _plan([{"CPU": 64, "GPU": 8}], samples=3).max_concurrent == 3
    assert _plan([{"CPU": 64, "GPU": 8}], samples=3).node_slots == (8,)


@pytest.mark.parametrize(
    ("nodes", "kwargs", "message"),
    [
        # more CPUs per trial than any GPU node has: the CPU-only head's 64 CPUs do not count
        (
            [{"CPU": 64, "GPU": 0}, {"CPU": 16, "GPU": 4}],
            {"cpus": 24},
            "--cpus-per-trial 24 is more than any node with GPUs has (16 CPUs); lower it",
        ),
        (
            [HEAD, {"CPU": 16, "GPU": 4}],
            {"gpus": 8},
            "--gpus-per-trial 8 is more than any node has (4 GPUs); lower it (fractions like 0.5 share a GPU)",
        ),
        (
            [{"CPU": 16, "GPU": 4}],
            {"gpus": 1.5},
            "--gpus-per-trial 1.5 cannot be split: above 1 Ray takes whole GPUs only; use 1 or 2 "
            "(fractions below 1 share a GPU)",
        ),
        ([{"CPU": 2}], {"cpus": 4}, "--cpus-per-trial 4 is more than any node has (2 CPUs); lower it"),
        (
            [HEAD, {"CPU": 0, "GPU": 4}],
            {},
            "no node with GPUs has a CPU for a trial (at most 0 CPUs); start Ray there with --num-cpus, "
            "or pass a fractional --cpus-per-trial",
        ),
    ],
)
def test_a_trial_no_node_fits_is_refused_in_one_line(nodes, kwargs, message):
    with pytest.raises(ConfigError) as raised:
        _plan(nodes, **kwargs)
    assert str(raised.value) == message
    assert "\n" not in str(raised.value)
