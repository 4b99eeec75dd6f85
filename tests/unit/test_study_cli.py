"""scripts/study_cli.py: the budget rule on an injected clock (no run is timed), the run options each study picks,
and the --tables / --figure branch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from conftest import load_script

cli = load_script("study_cli")


class Clock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_run_starts_only_where_the_last_runs_time_still_fits():
    clock = Clock()
    budget = cli.Budget(100.0, clock=clock)
    assert budget.can_start()  # no run's time known yet
    clock.now += 30
    budget.ran(30.0)
    assert budget.elapsed() == 30 and budget.runs == 1
    assert budget.can_start()  # 30 + 30 <= 100
    clock.now += 40
    assert budget.can_start()  # 70 + 30 = 100: fits exactly
    clock.now += 1
    assert not budget.can_start()  # 71 + 30 > 100
    budget.ran(20.0)  # a shorter last run: 71 + 20 fits again
    assert budget.can_start() and budget.runs == 2


def test_no_budget_never_stops_and_an_earlier_calls_last_run_counts_from_the_start():
    clock = Clock()
    unlimited = cli.Budget(None, last=1e9, clock=clock)
    clock.now += 1e9
    assert unlimited.can_start()
    assert not cli.Budget(100.0, last=101.0, clock=clock).can_start()
    assert cli.Budget(100.0, last=100.0, clock=clock).can_start()


def _parser(*args, **kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    cli.add_run_options(parser, Path("results/x"), Path("figures/x"), *args, **kwargs)
    cli.add_summary_options(parser)
    return parser


def test_run_options_keep_their_order_defaults_and_rewordings():
    parser = _parser(omit=("base", "batch_size"), limit="first items", work=None)
    flags = [a.option_strings[0] for a in parser._actions[1:]]
    assert flags == [
        *("--work", "--out", "--layer", "--device", "--budget", "--max-steps", "--n", "--limit", "--progress"),
        *("--tables", "--figure"),
    ]
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["limit"] == "first items" and helps["work"] is None
    args = parser.parse_args(["--budget", "5"])
    assert (args.work, args.out, args.budget, args.max_steps) == (Path("results/x"), Path("figures/x"), 5.0, None)
    with pytest.raises(ValueError, match="no run option"):
        _parser(omit=("max-steps",))


def test_show_summary_prints_or_redraws_from_the_summary_and_otherwise_does_nothing(tmp_path, capsys):
    (tmp_path / "summary.json").write_text(json.dumps({"rows": [1, 2]}))
    drawn = []

    def plot(summary, out):
        drawn.append((summary, out))

    parser = _parser()
    assert not cli.show_summary(parser.parse_args(["--out", str(tmp_path)]), str, plot)
    assert cli.show_summary(parser.parse_args(["--tables", "--out", str(tmp_path)]), lambda s: f"rows {s['rows']}")
    assert capsys.readouterr().out == "rows [1, 2]\n"
    assert cli.show_summary(parser.parse_args(["--figure", "--out", str(tmp_path)]), str, plot)
    assert drawn == [({"rows": [1, 2]}, tmp_path)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "0"], "--budget: must be at least 1, got 0"),
        (["--budget", "nan"], "--budget: must be at least 1, got nan"),
        (["--n", "-3"], "--n: must be at least 1, got -3"),
        (["--batch-size", "two"], "--batch-size: expected int, got 'two'"),
    ],
)
def test_numeric_run_options_are_refused_out_of_range_before_anything_runs(args, message, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(args)
    assert message in capsys.readouterr().err


def test_numeric_run_options_in_range_parse_to_their_kind():
    args = _parser().parse_args(["--budget", "2.5", "--n", "3", "--limit", "1"])
    assert (args.budget, args.n, args.limit) == (2.5, 3, 1)
