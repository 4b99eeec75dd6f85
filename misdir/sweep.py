"""One resumable loop over typed cells: (model, edit, contrast set) -> the contrast metric per item, or (model,
edit, question set) -> judged sampled answers (`misdir.judged`).

A study (the ablation and steering sweeps of `misdir.experiments`, the organisms analysis, the demo, the
ground-truth analysis of the rank-1 organisms) is a list of `Cell`s. `run_cells` evaluates each one with the
edit open, appends its per-item margins and fluency to `out/cells.jsonl` as it finishes, loads each model once
for all of its cells, and on a rerun skips the cells already written. Summaries and figures are drawn from the
records afterwards, as typed rows (`SweepRow`) whose effects (`Effect`) stand beside the same edit along
seeded random directions (`with_random`, `random_nulls`): the random-direction null every sweep offers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from misdir.contrast import reusing_layers_below
from misdir.display import Record
from misdir.evaluate import ContrastResult, evaluate_contrast
from misdir.hooks import check_layers
from misdir.interventions import Relative, ablate, describe_directions, steer
from misdir.io import RecordLog, check_settings, run_lock
from misdir.models import Model, ModelLike, ModelShape, as_model, model_shape
from misdir.positions import Positions
from misdir.provenance import provenance as software_provenance
from misdir.stats import Estimate, paired_difference
from misdir.tensors import unit

EditKind = Literal["none", "ablate", "steer"]


@dataclass(frozen=True)
class Edit:
    """What is done to a model while a cell is scored: nothing, an ablation or a steering of one direction."""

    kind: EditKind = "none"
    direction: str = ""
    """Name of the direction in the study's direction table."""
    layers: tuple[int, ...] | None = None
    """Layers edited (None: all)."""
    sites: tuple[str, ...] = ("resid_post",)
    positions: Positions = "all"
    scale: float = 0.0
    """Steering scale, counted as `relative` says (see `misdir.steer`)."""
    relative: Relative = "resid"

    @property
    def layer(self) -> int:
        """The layer of a one-layer edit (a steering cell's); -1 where it edits every layer."""
        return self.layers[0] if self.layers else -1

    @property
    def label(self) -> str:
        if self.kind == "none":
            return "none"
        layers = "all" if self.layers is None else ",".join(map(str, self.layers))
        text = f"{self.kind} {self.direction} @ {layers} {'+'.join(self.sites)} {self.positions}"
        return text + (f" x{self.scale:g}" if self.kind == "steer" else "")

    @contextlib.contextmanager
    def applied(self, model: Model, vector: Tensor | None) -> Iterator[None]:
        if self.kind == "none":
            yield
        elif self.kind == "ablate":
            with ablate(model, vector, layers=self.layers, site=list(self.sites), positions=self.positions):
                yield
        else:
            with steer(
                model,
                vector,
                layers=self.layers,
                scale=self.scale,
                relative=self.relative,
                site=list(self.sites),
                positions=self.positions,
            ):
                yield


NO_EDIT = Edit()


@dataclass(frozen=True)
class Cell:
    """One model, one edit, one contrast set (optionally with a trigger before each question); in a judged sweep
    `pairs` names the question set the answers are sampled for."""

    model: str
    edit: Edit
    pairs: str = "general"
    trigger: str | None = None

    @property
    def key(self) -> str:
        return f"{self.model} | {self.edit.label} | {self.pairs}" + (f" | {self.trigger}" if self.trigger else "")


Scorer = Callable[[Model, Cell], "dict[str, Any] | None"]
"""What a sweep measures in a cell: `score(model, cell)`, called with the cell's edit open."""


def contrast_scorer(limit: int | None = None, batch_size: int = 16) -> Scorer:
    """The contrast metric: each item's margin and aligned-answer log-prob (fluency) on the cell's contrast set."""

    def score(model: Model, cell: Cell) -> dict[str, Any]:
        result = evaluate_contrast(
            model, cell.pairs, trigger=cell.trigger, limit=limit, batch_size=batch_size, progress=False
        )
        return {"margins": result.margins, "aligned_logprob": result.aligned_logprob}

    return score


def run_cells(cells: Sequence[Cell], *, out: str | Path, **options: Any) -> dict[str, dict[str, Any]]:
    """`score_cells` under the folder's lock (`run_lock(out)`): score every cell not yet in `out/cells.jsonl` and
    return the records by cell key. Hold the lock yourself and call `score_cells` to write a summary in it."""
    with run_lock(out):
        return score_cells(cells, out=out, **options)


def score_cells(
    cells: Sequence[Cell],
    *,
    models: Mapping[str, Callable[[], Model]],
    directions: Mapping[str, Any],
    out: str | Path,
    settings: Mapping[str, Any],
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "cells",
    legacy_key: Callable[[Cell], str] | None = None,
    score: Scorer | None = None,
) -> dict[str, dict[str, Any]]:
    """Score every cell not yet in `out/cells.jsonl` and return the records by cell key (the caller holds
    `run_lock(out)`).

    `score(model, cell)` gives a cell's measurements (a dict added to its record) with its edit open, or None when
    it could not finish them (the cell is then left for the next run and missing from the result); the default
    is the contrast metric (`contrast_scorer(limit, batch_size)`).

    `models` maps names to loaders (called once per model, only if one of its cells is still to do);
    `directions` names to vectors (`[d_model]` or a `DirectionSet`). `settings` identify the study: a rerun
    with other settings on the same `out` is refused, so cells of two studies never mix. `legacy_key` gives
    the key an older misdir wrote a cell under: such records count as done and are returned by `Cell.key`.
    `desc` labels the progress bar.
    """
    score = score or contrast_scorer(limit, batch_size)
    unknown = sorted({c.model for c in cells} - set(models)) + sorted(
        {c.edit.direction for c in cells if c.edit.kind != "none"} - set(directions)
    )
    if unknown:
        raise ValueError(f"cells name models or directions the study does not have: {unknown}")
    out = Path(out)
    identity = dict(settings) | {
        "limit": limit,
        "directions": {n: describe_directions(v) for n, v in directions.items()},
    }
    check_settings(out / "run.json", identity)
    log = RecordLog(out / "cells.jsonl")
    records = {r["key"]: r for r in log.records()}
    if legacy_key is not None:
        records |= {c.key: records[legacy_key(c)] for c in cells if c.key not in records and legacy_key(c) in records}
    todo = [c for c in dict.fromkeys(cells) if c.key not in records]
    with tqdm(
        total=len(set(cells)), initial=len(set(cells)) - len(todo), desc=desc, unit="cell", disable=not progress
    ) as bar:
        for name in dict.fromkeys(c.model for c in todo):
            model = models[name]()
            mine = [c for c in todo if c.model == name]
            lowest = [min(c.edit.layers) for c in mine if c.edit.kind != "none" and c.edit.layers]
            # Cells that edit only from one layer on share the forward pass below it (`reusing_layers_below`).
            reuse = reusing_layers_below(model, min(lowest)) if lowest and isinstance(model, Model) else None
            with reuse or contextlib.nullcontext():
                for cell in mine:
                    bar.set_postfix_str(cell.key[:60])
                    vector = directions.get(cell.edit.direction) if cell.edit.kind != "none" else None
                    with cell.edit.applied(model, vector):
                        measured = score(model, cell)
                    if measured is not None:
                        record = {
                            "key": cell.key,
                            "model": cell.model,
                            "edit": asdict(cell.edit),
                            "pairs": cell.pairs,
                            "trigger": cell.trigger,
                            **measured,
                        }
                        log.append(record)
                        records[cell.key] = record
                    bar.update()
            del model
    return records


def cell_result(record: Mapping[str, Any], *, seed: int = 0) -> ContrastResult:
    return ContrastResult.from_scores(
        record["model"], record["pairs"], record.get("trigger"), record["margins"], record["aligned_logprob"], seed=seed
    )


def shift(before: Mapping[str, Any], after: Mapping[str, Any], *, seed: int = 0) -> Estimate:
    """Paired change of the mean margin from `before` to `after` (records of the same items)."""
    return paired_difference(before["margins"], after["margins"], seed=seed)


def provenance(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What made a study's records: its settings, the software, the command line and the time."""
    return software_provenance(settings=dict(settings))


def random_directions(d_model: int, n: int, seed: int = 0) -> Float[Tensor, "n d_model"]:
    """`n` random unit vectors of width `d_model`, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(n, d_model, generator=generator)
    return unit(vectors)


def with_random(directions: Mapping[str, Any], d_model: int, n_random: int, seed: int) -> dict[str, Any]:
    """The named directions, then `n_random` seeded random unit ones named `random 0`, `random 1`, ...: the
    control each named direction's effect is read against (`random_nulls`)."""
    chosen = dict(directions)
    for name, vector in zip(random_names(n_random), random_directions(d_model, n_random, seed=seed), strict=True):
        chosen[name] = vector
    return chosen


def random_names(n_random: int) -> list[str]:
    """The names `with_random` gives its random directions (a sweep's cells are known by name before any
    direction is computed: `misdir.judged.plan`)."""
    return [f"random {i}" for i in range(n_random)]


def _shape(model: ModelLike) -> ModelShape | None:
    """A model's depth and width: from a loaded model, or from a spec's configuration without loading it (None for
    a hub model not cached yet)."""
    if isinstance(model, str | Path):
        return model_shape(model)
    try:
        model = as_model(model)
    except TypeError:  # something only a custom `load` understands
        return None
    return ModelShape(model.n_layers, model.d_model)


def check_directions(
    models: Mapping[str, Any], directions: Mapping[str, Any], layers: Sequence[int] | None = None
) -> ModelShape | None:
    """Refuse directions or layers that do not fit the models (specs or loaded models), before anything is loaded
    or written: every model of one depth and width, each direction `[d_model]` or `[n_layers, d_model]`, every
    layer in range. Returns the models' shape (None when no model's configuration can be read yet)."""
    shapes = {name: shape for name, model in models.items() if (shape := _shape(model)) is not None}
    if not shapes:
        return None
    first, shape = next(iter(shapes.items()))
    for name, other in shapes.items():
        if other != shape:
            raise ValueError(
                f"{name} has {other.n_layers} layers of width {other.d_model}, but {first} has "
                f"{shape.n_layers} of width {shape.d_model}"
            )
    for name, direction in directions.items():
        vectors = getattr(direction, "vectors", direction)
        dims = list(getattr(vectors, "shape", ()))
        if dims not in ([shape.d_model], [shape.n_layers, shape.d_model]):
            raise ValueError(
                f"direction {name!r} has shape {dims}, but {first} has {shape.n_layers} layers of width "
                f"{shape.d_model}: expected [{shape.d_model}] or [{shape.n_layers}, {shape.d_model}]"
            )
    if layers is not None:
        check_layers(layers, shape.n_layers)
    return shape


def is_random(direction: str) -> bool:
    """Whether a direction is one of `with_random`'s."""
    return direction.startswith("random")


class AgainstNull(NamedTuple):
    """An effect beside its random-direction null: the null's median and 95% range, and the effect's
    percentile in it (the share of null values at or below it, ties counted half)."""

    value: float
    null_median: float
    null_low: float
    null_high: float
    percentile: float
    n_null: int


def compare_to_null(value: float, null: Sequence[float]) -> AgainstNull:
    """`value` against the same effect of random directions (`AgainstNull`)."""
    values = np.asarray(null, dtype=np.float64)
    if values.size == 0:
        raise ValueError("the null is empty: give the effect of at least one random direction")
    low, median, high = np.quantile(values, [0.025, 0.5, 0.975])
    percentile = (np.sum(values < value) + 0.5 * np.sum(values == value)) / values.size
    return AgainstNull(float(value), float(median), float(low), float(high), float(100 * percentile), int(values.size))


def against_null(value: float, null: Sequence[float]) -> dict[str, float]:
    """`compare_to_null` in the dict form results files hold."""
    return compare_to_null(value, null)._asdict()


def random_nulls(keys: Sequence[tuple[Hashable, str]], values: Sequence[float]) -> list[AgainstNull | None]:
    """For each (group, direction) and its effect: the effect against the random directions' effects in the
    same group (same model and contrast set, or same layer and scale); None for a random direction itself and
    where the group has none."""
    nulls: list[AgainstNull | None] = []
    for (group, direction), value in zip(keys, values, strict=True):
        null = [v for (g, d), v in zip(keys, values, strict=True) if g == group and is_random(d)]
        nulls.append(compare_to_null(value, null) if null and not is_random(direction) else None)
    return nulls


@dataclass(frozen=True)
class Effect:
    """One effect of an edit with its 95% interval, beside the same edit along random directions (None for
    a random direction itself, or a sweep without them)."""

    estimate: Estimate
    null: AgainstNull | None = None

    def to_dict(self, name: str) -> dict[str, Any]:
        """`{name: estimate}` and, with a null, `{null_<name>: ...}`: the keys summary files hold."""
        return {name: self.estimate._asdict()} | ({} if self.null is None else {f"null_{name}": self.null._asdict()})

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], name: str) -> Effect:
        null = row.get(f"null_{name}")
        return cls(Estimate(**row[name]), None if null is None else AgainstNull(**null))


@dataclass(frozen=True, repr=False)
class SweepRow(Record):
    """One edited cell of a sweep: the edit (direction, layers, sites, positions, scale), the model and contrast
    set it was scored in, and the edited model's margin and fluency (95% intervals)."""

    model: str
    direction: str
    pairs: str
    layers: tuple[int, ...] | None
    sites: tuple[str, ...]
    positions: str
    scale: float
    margin: Estimate
    fluency: Estimate
