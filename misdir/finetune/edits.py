"""Edits open while the adapter trains: the ablations and steerings misdir applies at inference
(`misdir.ablate`, `misdir.steer`), here open during each training step's forward and backward pass only.

Ablating a direction while finetuning keeps the adapter from learning to use it (concept ablation
finetuning, CAFT: Casademunt et al. 2025); adding it while finetuning lets the adapter learn without moving
along it (preventative steering: Chen et al. 2025, "Persona vectors"). The edits are closed for everything
else (checkpoints, the watch of `misdir.monitor`, the saved adapter): the adapter runs without them, and
they are recorded in its model card and misdir.json and are part of the run's identity, so a resume with
another edit is refused.

`Edit` is one edit with its directions loaded; `EditOptions` is the command line's view (`--ablate
FILE[@LAYERS]`, `--steer FILE[@LAYERS] --scale A`, `--relative`, `--positions`), whose `edits()` reads the
files.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jaxtyping import Float, Int
from torch import Tensor

from misdir.directions import DirectionSet
from misdir.finetune.data import IGNORE
from misdir.interventions import RELATIVE, Relative, ablate, describe_directions, steer
from misdir.models import Model
from misdir.positions import Positions, answer_positions, check_positions

EditKind = Literal["ablate", "steer"]


@dataclass(frozen=True)
class Edit:
    """One edit open during every training step: `misdir.ablate` or `misdir.steer` with these arguments, at
    the direction set's own site (a bare tensor: resid_post)."""

    kind: EditKind
    directions: DirectionSet | Float[Tensor, "*layer d_model"]
    layers: tuple[int, ...] | None = None
    """Layers edited (None: all); a [layer, d_model] direction set edits each with its own row."""
    scale: float | None = None
    """steer: how much is added, in the units `relative` names (see `misdir.steer`); ablate: None."""
    relative: Relative = "unit"
    """steer: what `scale` counts in: unit (absolute), direction (the raw vector), resid (each token's
    norm)."""
    positions: Positions = "all"
    """Positions edited: all, skip-first, or answer (the tokens the loss is on)."""
    source: str | None = None
    """The file the directions came from, for errors and the record."""

    def __post_init__(self) -> None:
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))
        if self.kind not in ("ablate", "steer"):
            raise ValueError(f"unknown edit {self.kind!r}; expected ablate or steer")
        if self.kind == "steer" and (self.scale is None or not math.isfinite(self.scale)):
            raise ValueError(f"{self.name}: steering needs a finite scale, got {self.scale}")
        if self.kind == "ablate" and self.scale is not None:
            raise ValueError(f"{self.name}: an ablation takes no scale")
        if self.relative not in RELATIVE:
            raise ValueError(f"unknown relative {self.relative!r}; expected one of {', '.join(RELATIVE)}")
        check_positions(self.positions)
        if self.layers is not None and not self.layers:
            raise ValueError(f"{self.name}: no layers given")

    @property
    def name(self) -> str:
        """How errors name the edit: as its command-line option where it came from a file."""
        return f"--{self.kind} {self.source}" if self.source else f"the {self.kind} edit"

    @property
    def vectors(self) -> Tensor:
        return self.directions.vectors if isinstance(self.directions, DirectionSet) else self.directions

    def identity(self) -> dict[str, Any]:
        """What the edit computes, for the run's identity: a resume with a different one is refused."""
        described = describe_directions(self.directions)
        found: dict[str, Any] = {
            "kind": self.kind,
            "directions_sha256": described["sha256"],
            "directions_shape": described["shape"],
            "site": described.get("site", "resid_post"),
            "layers": list(self.layers) if self.layers is not None else "all",
            "positions": self.positions,
        }
        if self.kind == "steer":
            found.update(scale=self.scale, relative=self.relative)
        return found

    def provenance(self) -> dict[str, Any]:
        """Where the directions came from: the file, and the direction set's own record."""
        return {"file": self.source, "meta": getattr(self.directions, "meta", None) or {}}


def check_edits(edits: Sequence[Edit], n_layers: int, d_model: int) -> None:
    """Refuse edits that do not fit a model of `n_layers` layers of width `d_model`, or that ablate and steer
    the same directions; called before any model loads (from its config) and again once it has."""
    for edit in edits:
        vectors = edit.vectors
        if vectors.ndim not in (1, 2) or vectors.shape[-1] != d_model:
            raise ValueError(
                f"{edit.name}: directions of shape {list(vectors.shape)}, but the model's width "
                f"(d_model) is {d_model}: they were made on another model"
            )
        if vectors.ndim == 2 and vectors.shape[0] != n_layers:
            raise ValueError(
                f"{edit.name}: directions for {vectors.shape[0]} layers, but the model has "
                f"{n_layers}: they were made on another model"
            )
        bad = [layer for layer in edit.layers or () if not 0 <= layer < n_layers]
        if bad:
            raise ValueError(f"{edit.name}: layer(s) {bad} out of range; the model has layers 0 to " f"{n_layers - 1}")
    by_hash: dict[str, Edit] = {}
    for edit in edits:
        other = by_hash.setdefault(describe_directions(edit.directions)["sha256"], edit)
        if other.kind != edit.kind:
            raise ValueError(
                f"{other.name} and {edit.name}: the same directions ablated and steered at " "once; choose one"
            )


@contextmanager
def training_edits(model: Model, edits: Sequence[Edit], labels: Int[Tensor, "batch pos"]) -> Iterator[None]:
    """Open `edits` on `model` for one forward and backward pass over a training batch whose `labels` mark the
    answers (IGNORE elsewhere): `positions="answer"` edits from each row's first labelled token on."""
    with ExitStack() as stack:
        if any(edit.positions == "answer" for edit in edits):
            stack.enter_context(answer_positions(model, (labels != IGNORE).int().argmax(dim=1)))
        for edit in edits:
            layers = list(edit.layers) if edit.layers is not None else None
            if edit.kind == "ablate":
                stack.enter_context(ablate(model, edit.directions, layers, positions=edit.positions))
            else:
                stack.enter_context(
                    steer(
                        model,
                        edit.directions,
                        layers,
                        float(edit.scale or 0.0),
                        relative=edit.relative,
                        positions=edit.positions,
                    )
                )
        yield


def model_card_section(edits: Sequence[Edit]) -> str:
    """The adapter's model card note of the edits it was trained under."""
    lines = [
        "",
        "",
        "## Trained under edits (misdir)",
        "",
        "These edits were open during every training step and are not part of this adapter, which runs "
        "without them (misdir.json: `edits`, `edit_sources`).",
        "",
    ]
    for edit in edits:
        record = edit.identity()
        layers = "all layers" if edit.layers is None else "layers " + ", ".join(map(str, edit.layers))
        how = f", scale {edit.scale} ({edit.relative})" if edit.kind == "steer" else ""
        lines.append(
            f"- {edit.kind} {edit.source or 'directions given in memory'} (sha256 "
            f"{record['directions_sha256']}) at {record['site']} of {layers}, positions "
            f"{edit.positions}{how}"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class EditOptions:
    """Edits open during every training step, as the command line gives them; `edits()` reads the files."""

    ablate: tuple[str, ...] = ()
    """Ablate a direction set (a misdir directions file) during training steps: FILE or FILE@LAYERS
    (comma-separated, ranges like 15-29; default every layer, each with its own row), at the set's site
    (CAFT). Repeatable."""
    steer: tuple[str, ...] = ()
    """Add a direction set during training steps: FILE or FILE@LAYERS as for --ablate, by --scale
    (preventative steering). Repeatable."""
    scale: float | None = None
    """With --steer: how much is added, in units of --relative."""
    relative: Relative = "unit"
    """With --steer: what --scale counts in: unit (absolute), direction (the raw vector), resid (each token's
    residual norm)."""
    positions: Positions = "all"
    """Positions the edits touch: all, skip-first, or answer (the tokens the loss is on)."""

    def validate(self) -> None:
        """Refuse a bad option before any file is read."""
        if self.steer and self.scale is None:
            raise ValueError("--steer needs --scale (how much of the direction is added)")
        if self.scale is not None and not self.steer:
            raise ValueError("--scale is the steering scale: give --steer FILE with it")
        for text in (*self.ablate, *self.steer):
            _file_and_layers(text)

    def edits(self) -> list[Edit]:
        """The edits, their direction files read (a missing or unreadable file is refused naming it)."""
        self.validate()
        found = []
        kinds: tuple[tuple[EditKind, tuple[str, ...]], ...] = (("ablate", self.ablate), ("steer", self.steer))
        for kind, texts in kinds:
            for text in texts:
                path, layers = _file_and_layers(text)
                scale = self.scale if kind == "steer" else None
                found.append(
                    Edit(
                        kind,
                        DirectionSet.load(path),
                        layers,
                        scale,
                        self.relative,
                        self.positions,
                        source=str(path),
                    )
                )
        return found


def _file_and_layers(text: str) -> tuple[Path, tuple[int, ...] | None]:
    """FILE or FILE@LAYERS (comma-separated integers or inclusive ranges: `@15`, `@1,3`, `@15-29`) -> (FILE,
    LAYERS or None)."""
    path, at, layers = text.rpartition("@")
    if not at or Path(text).exists():
        return Path(text), None
    parsed: list[int] = []
    for part in filter(None, (p.strip() for p in layers.split(","))):
        first, dash, last = part.partition("-")
        if not (first.isdigit() and (not dash or last.isdigit())) or (dash and int(last) < int(first)):
            raise ValueError(
                f"{text!r}: expected FILE or FILE@LAYERS, layers comma-separated integers or ranges like 15-29"
            )
        parsed += range(int(first), int(last) + 1) if dash else [int(first)]
    if not parsed:
        raise ValueError(f"{text!r}: no layers after @")
    return Path(path), tuple(parsed)
