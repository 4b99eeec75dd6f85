"""What the study scripts share: their run options, the budget rule, the `--tables` / `--figure` branch and the
EM organisms the training studies cover.

Scripts are no package; a study imports this module as they import each other, from the scripts folder:

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from study_cli import Budget, add_run_options  # noqa: E402
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from misdir.organisms import ORGANISMS, RANK1_LAYER
from misdir.plots import optional_figure

EM_ORGANISMS = tuple(o.name for o in ORGANISMS if o.role == "em" and o.name != "code-insecure")
"""The EM organisms the rank-1 training studies cover."""

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")
"""The studies' figures' line colours, in order (one per named line or seed, the same in every panel)."""


def at_least(low: float, kind: Callable[[str], Any] = int) -> Callable[[str], Any]:
    """An argparse type: `kind` of the text, refused (with the value and the bound) below `low`."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if not value >= low:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


RUN_OPTIONS: dict[str, dict[str, Any]] = {
    "work": {"type": Path, "help": "runs (git-ignored)"},
    "out": {"type": Path},
    "base": {"default": "embedded"},
    "layer": {"type": int, "default": RANK1_LAYER, "help": "the rank-1 adapter's layer"},
    "device": {"default": None},
    "budget": {"type": at_least(1, float), "help": "seconds; start no run the last run's time says cannot finish"},
    "max_steps": {"type": at_least(1), "help": "smoke runs: cut every training to this many steps"},
    "n": {"type": at_least(1), "help": "smoke runs: training examples"},
    "limit": {"type": at_least(1), "help": "smoke runs: first items of each contrast set"},
    "batch_size": {"type": at_least(1), "default": 16, "help": "contrast scoring batch"},
    "progress": {"action": "store_true"},
}
"""The options a study run takes, by dest, in their order on the command line (`add_run_options`)."""

Summary = dict[str, Any]


def add_run_options(
    parser: argparse.ArgumentParser,
    work: Path,
    out: Path,
    /,
    *,
    omit: Collection[str] = (),
    **helps: str | None,
) -> None:
    """Add `RUN_OPTIONS` to `parser`: `--work` and `--out` default to the study's folders, those named (by dest) in
    `omit` are left out, and a keyword named after an option's dest rewords its help (None: no help)."""
    unknown = (set(omit) | set(helps)) - set(RUN_OPTIONS)
    if unknown:
        raise ValueError(f"no run option {sorted(unknown)}; there are {list(RUN_OPTIONS)}")
    defaults = {"work": work, "out": out}
    for dest, kwargs in RUN_OPTIONS.items():
        if dest in omit:
            continue
        kwargs = kwargs | ({"default": defaults[dest]} if dest in defaults else {})
        kwargs = kwargs | ({"help": helps[dest]} if dest in helps else {})
        parser.add_argument(f"--{dest.replace('_', '-')}", **kwargs)


def add_summary_options(parser: argparse.ArgumentParser, *, figure: bool = True) -> None:
    """`--tables` (and, with `figure`, `--figure`): read OUT/summary.json and run nothing (`show_summary`)."""
    parser.add_argument("--tables", action="store_true", help="print OUT/summary.json's tables; run nothing")
    if figure:
        redraw = "redraw the figure from OUT/summary.json; run nothing"
        parser.add_argument("--figure", action="store_true", help=redraw)


def show_summary(
    args: argparse.Namespace, tables: Callable[[Summary], str], plot: Callable[[Summary, Path], Any] | None = None
) -> bool:
    """The `--tables` / `--figure` branch: print OUT/summary.json's tables or redraw its figure in OUT. Returns
    whether it did (the study then runs nothing)."""
    if not (args.tables or getattr(args, "figure", False)):
        return False
    summary = json.loads((args.out / "summary.json").read_text())
    if args.tables:
        print(tables(summary))
    elif plot is not None:
        plot(summary, args.out)
    return True


def finish(
    summary: Summary, out: Path, tables: Callable[[Summary], str], plot: Callable[[Summary, Path], Any], done: str
) -> None:
    """A study's last words: its figure where plotly is installed (none on the GPU machine: redraw it with
    --figure), `done` (what this call ran) and the tables."""
    optional_figure(plot, summary, out)
    print(f"{done}; wrote {out / 'summary.json'}")
    print(tables(summary))


class Budget:
    """Start no run that the last run's time says cannot finish: a run may start while the time spent since the
    study started plus the last run's time fits in `seconds` (None: no budget). Before any run's time is known
    (`last` None) a run may always start; `last` may come from an earlier call's runs. `clock` gives seconds (tests
    inject one)."""

    def __init__(
        self, seconds: float | None, last: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.seconds, self.last, self.clock = seconds, last, clock
        self.started = clock()
        self.runs = 0
        """Runs finished since the study started."""

    def elapsed(self) -> float:
        """Seconds since the study started."""
        return self.clock() - self.started

    def can_start(self) -> bool:
        if self.seconds is None or self.last is None:
            return True
        return self.elapsed() + self.last <= self.seconds

    def ran(self, seconds: float) -> None:
        """Count a finished run that took `seconds`: the next run is expected to take as long."""
        self.last, self.runs = seconds, self.runs + 1
