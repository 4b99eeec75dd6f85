"""The sweep engine's random-direction null and provenance, against independent computations."""

from __future__ import annotations

import shlex
import sys

import pytest

from misdir.stats import Estimate
from misdir.sweep import Effect, against_null, compare_to_null, provenance, random_nulls, with_random


def test_compare_to_null_equals_a_direct_count_with_ties_counted_half():
    null = [0.1, 0.5, 0.5, -0.2, 0.9, 0.3]
    got = compare_to_null(0.5, null)
    below, ties = sum(v < 0.5 for v in null), sum(v == 0.5 for v in null)
    assert got.percentile == pytest.approx(100 * (below + ties / 2) / len(null))
    ordered = sorted(null)  # numpy's default (linear) quantiles, computed by hand

    def quantile(q):
        h = (len(ordered) - 1) * q
        return ordered[int(h)] + (h - int(h)) * (ordered[min(int(h) + 1, len(ordered) - 1)] - ordered[int(h)])

    assert (got.null_low, got.null_median, got.null_high) == pytest.approx(
        (quantile(0.025), quantile(0.5), quantile(0.975))
    )
    assert against_null(0.5, null) == got._asdict() and got.n_null == 6
    with pytest.raises(ValueError, match="the null is empty"):
        compare_to_null(0.5, [])


def test_random_nulls_compare_each_named_direction_with_the_random_ones_of_its_group_only():
    keys = [("a", "d"), ("a", "random 0"), ("a", "random 1"), ("b", "d"), ("b", "random 0"), ("c", "d")]
    values = [1.0, 0.2, 0.4, -1.0, 3.0, 5.0]
    nulls = random_nulls(keys, values)
    assert nulls[0] == compare_to_null(1.0, [0.2, 0.4]) and nulls[0].percentile == 100.0
    assert nulls[3] == compare_to_null(-1.0, [3.0]) and nulls[3].percentile == 0.0
    assert nulls[1] is nulls[2] is nulls[4] is None  # random directions themselves
    assert nulls[5] is None  # a group without random directions


def test_with_random_adds_seeded_unit_directions_after_the_named_ones():
    import torch

    named = {"d": torch.ones(8)}
    chosen = with_random(named, 8, 3, seed=2)
    assert list(chosen) == ["d", "random 0", "random 1", "random 2"]
    again = with_random(named, 8, 3, seed=2)
    for name in ("random 0", "random 2"):
        assert torch.equal(chosen[name], again[name])
        assert float(chosen[name].norm()) == pytest.approx(1.0, abs=1e-6)
    assert not torch.equal(with_random(named, 8, 1, seed=3)["random 0"], chosen["random 0"])


def test_effect_writes_its_null_only_when_it_has_one():
    estimate = Estimate(0.5, 0.1, 0.9, 10)
    assert Effect(estimate).to_dict("shift") == {"shift": estimate._asdict()}
    with_null = Effect(estimate, compare_to_null(0.5, [0.0, 1.0]))
    row = with_null.to_dict("shift")
    assert row["null_shift"]["percentile"] == 50.0
    assert Effect.from_dict(row, "shift") == with_null and Effect.from_dict({"shift": row["shift"]}, "shift") == Effect(
        estimate
    )


def test_provenance_records_the_command_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["misdir", "ablate", "--out", "a folder/x"])
    record = provenance({"seed": 1})
    assert record["command"] == "misdir ablate --out 'a folder/x'" and shlex.split(record["command"]) == sys.argv
    assert record["settings"] == {"seed": 1} and {"misdir_version", "torch_version", "transformers_version"} <= set(
        record
    )
