"""Pareto fronts and ranks (analysis/pareto.py): shapes, ties, duplicates, missing values, directions."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest

from segtune.analysis.pareto import accuracy_latency, front_of_trials, pareto_front, pareto_ranks
from segtune.analysis.trials import TrialSummary

AP_LATENCY = ["max", "min"]


def test_front_of_accuracy_against_latency():
    points = [(50, 10), (40, 5), (45, 20), (30, 5), (60, 100)]
    # (45, 20) loses to (50, 10) on both; (30, 5) ties (40, 5) on latency and loses on AP
    assert pareto_front(points, AP_LATENCY) == [0, 1, 4]
    assert pareto_ranks(points, AP_LATENCY) == [1, 1, 2, 2, 1]


def test_duplicates_share_the_front_and_a_tie_on_one_objective_still_dominates():
    assert pareto_front([(50, 10), (50, 10), (40, 20)], AP_LATENCY) == [0, 1]
    assert pareto_ranks([(50, 10), (50, 12)], AP_LATENCY) == [1, 2]
    assert pareto_ranks([(1, 1)] * 4, AP_LATENCY) == [1, 1, 1, 1]


def test_missing_values_are_on_no_front():
    points = [(50, None), (40, math.nan), (30, 5), (20, math.inf), (None, None)]
    assert pareto_ranks(points, AP_LATENCY) == [None, None, 1, None, None]
    assert pareto_front([(None, 1)], AP_LATENCY) == []


def test_ranks_peel_fronts_one_after_another():
    # a staircase of three fronts, given shuffled
    layers = {1: [(90, 30), (80, 20), (70, 10)], 2: [(85, 35), (75, 25), (65, 15)], 3: [(60, 40)]}
    points = [(p, rank) for rank, ps in layers.items() for p in ps]
    random.Random(0).shuffle(points)
    assert pareto_ranks([p for p, _ in points], AP_LATENCY) == [rank for _, rank in points]


@pytest.mark.parametrize("directions", [["min", "min"], ["max", "max"], ["min", "max"]])
def test_directions_flip_what_is_better(directions):
    points = [(1, 1), (2, 2), (1, 2), (2, 1)]
    best = tuple(1 if d == "min" else 2 for d in directions)
    assert pareto_front(points, directions) == [points.index(best)]


def test_three_objectives_match_a_brute_force_check():
    rng = random.Random(1)
    points = [tuple(rng.randint(0, 4) for _ in range(3)) for _ in range(40)]  # many ties and duplicates
    directions = ["max", "min", "min"]
    sign = [-1, 1, 1]

    def dominates(a, b):
        a, b = [s * x for s, x in zip(sign, a)], [s * x for s, x in zip(sign, b)]
        return all(x <= y for x, y in zip(a, b)) and a != b

    expected = [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
    assert pareto_front(points, directions) == expected
    ranks = pareto_ranks(points, directions)
    for i, j in itertools.permutations(range(len(points)), 2):  # a dominated point is on a later front
        if dominates(points[i], points[j]):
            assert ranks[i] < ranks[j]


def test_edge_cases_and_bad_directions():
    assert pareto_front([], AP_LATENCY) == [] and pareto_ranks([], AP_LATENCY) == []
    assert pareto_front([(3, 4)], AP_LATENCY) == [0]
    with pytest.raises(ValueError, match="max' or 'min"):
        pareto_front([(1, 2)], ["max", "fast"])
    with pytest.raises(ValueError, match="directions"):
        pareto_front([(1, 2)], ["max"])


def test_front_of_trials_reads_the_ranking_metric_and_the_recorded_latency():
    def trial(trial_id, ap, latency):
        costs = {} if latency is None else {"cost/latency_ms": latency, "cost/device": "cpu"}
        return TrialSummary(
            trial_id,
            Path(trial_id),
            "finished",
            "",
            best_value=ap,
            costs=costs,
            best_metrics={"segm/AP": ap, "bbox/AP": 99.0},
        )

    trials = [trial("a", 30.0, 50.0), trial("b", 20.0, 10.0), trial("c", 25.0, 60.0), trial("d", 40.0, None)]
    front = front_of_trials(trials, accuracy_latency("segm/AP", "max"), "segm/AP")
    assert [t.trial_id for t in front] == ["a", "b"]  # c is slower and worse than a; d was never timed
    # any recorded metric or cost can be an objective
    front = front_of_trials(trials, [("bbox/AP", "max"), ("cost/latency_ms", "min")], "segm/AP")
    assert [t.trial_id for t in front] == ["b"]
