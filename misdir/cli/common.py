"""What every command shares: the help of common options, the one-line error and exit status, and the input
checks that refuse bad options before anything is loaded or written."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from misdir.directions import DirectionSet
    from misdir.models import ModelShape

LIMIT_HELP = "only the first N items of each contrast set or question set (0: all)"
"""What --limit means in every command."""


def _say_error(message: object) -> None:
    """Every command's error line: `misdir: MESSAGE` on stderr."""
    typer.echo(f"misdir: {message}", err=True)


def _fail(message: object, *, usage: bool = False) -> NoReturn:
    """Refuse bad input before anything is loaded or written: one line, exit 2 for a bad option, else 1."""
    _say_error(message)
    raise typer.Exit(2 if usage else 1)


@contextmanager
def _refused() -> Iterator[None]:
    """Input checks inside report a ValueError or OSError as `_fail` does (exit 1)."""
    try:
        yield
    except (ValueError, OSError) as error:
        _fail(error)


def _limit(limit: int | None) -> int | None:
    """--limit as every command reads it (see LIMIT_HELP): None for all."""
    if limit is not None and limit < 0:
        _fail(f"--limit {limit}: must be 0 (all items) or a positive count", usage=True)
    return limit or None


RANDOM_HELP = "random unit directions edited the same way: the null every effect is printed beside (at least 20)"
POSITIONS_HELP = "positions edited: all, skip-first (every token but the first: the attention sink) or answer"


def _check_random(n: int) -> None:
    _at_least("--random", n, 0)
    if 0 < n < 20:
        _say_error(f"warning: --random {n}: fewer than 20 random directions cannot place an effect in its null")


def _check_positions(positions: str) -> None:
    from misdir.positions import POSITIONS

    if positions not in POSITIONS:
        _fail(f"--positions {positions!r}: expected one of {', '.join(POSITIONS)}", usage=True)


def _at_least(option: str, value: float | None, minimum: float) -> None:
    if value is not None and not (math.isfinite(value) and value >= minimum):
        _fail(f"{option} {value}: must be a number of at least {minimum}", usage=True)


def _numbers(text: str, option: str) -> list[float]:
    """A comma-separated list of finite numbers (e.g. --scales)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        _fail(f"{option} {text!r}: expected comma-separated numbers", usage=True)
    bad = [v for v in values if not math.isfinite(v)]
    if not values or bad:
        _fail(f"{option} {text!r}: " + (f"{bad[0]} is not a finite number" if bad else "no numbers"),
              usage=True)
    return values


def _model_shape(specs: Mapping[str, str]) -> ModelShape | None:
    """The shared depth and width of the models named by option (`--base`: SPEC), from their configs alone;
    None when unknown (a hub model not cached yet). Refuses unloadable specs and models of other shapes."""
    from misdir.models import model_shape

    shapes = {}
    for option, spec in specs.items():
        with _refused():
            shapes[option] = model_shape(spec)
    known = {option: shape for option, shape in shapes.items() if shape is not None}
    if not known:
        return None
    first, reference = next(iter(known.items()))
    for option, shape in known.items():
        if shape != reference:
            _fail(f"{option} {specs[option]} has {shape.n_layers} layers of width {shape.d_model}, but "
                  f"{first} {specs[first]} has {reference.n_layers} of width {reference.d_model}")
    return reference


def _check_layers(option: str, layers: Sequence[int] | None, shape: ModelShape | DirectionSet | None) -> None:
    """Every layer in [0, n_layers) of `shape` (a model or a direction set); unchecked when it is unknown."""
    if shape is None:
        return
    bad = [layer for layer in layers or () if not 0 <= layer < shape.n_layers]
    if bad:
        _fail(f"{option} {','.join(map(str, bad))}: out of range; the model has layers 0 to "
              f"{shape.n_layers - 1}", usage=True)


def _check_directions(files: Sequence[Path], layer: int | None, shape: ModelShape | None) -> None:
    """Every direction file readable, of the model's width and depth, and with layer `layer` (--layer)."""
    from misdir.directions import DirectionSet

    for path in files:
        with _refused():
            directions = DirectionSet.load(path)
        if shape is not None and (directions.n_layers, directions.d_model) != (shape.n_layers, shape.d_model):
            _fail(f"{path} has {directions.n_layers} layers of width {directions.d_model}, but the model has "
                  f"{shape.n_layers} layers of width {shape.d_model}: it was made on another model")
        if layer is not None and not 0 <= layer < directions.n_layers:
            _fail(f"--layer {layer}: out of range; {path} has layers 0 to {directions.n_layers - 1}",
                  usage=True)


def _check_pairs(pairs: Sequence[str]) -> None:
    from misdir.questions import load_contrast_pairs

    for name in pairs:
        with _refused():
            load_contrast_pairs(name)


def _named(spec: str) -> tuple[str, str]:
    name, sep, rest = spec.partition("=")
    return (name, rest) if sep else (Path(spec).name or spec, spec)


def _null_text(null: dict[str, float] | None) -> str:
    """` (random: median [2.5%, 97.5%], pNN)` after an effect, or nothing without random directions."""
    if null is None:
        return ""
    return (f" (random x{null['n_null']}: {null['null_median']:+.2f} [{null['null_low']:+.2f}, "
            f"{null['null_high']:+.2f}], percentile {null['percentile']:.0f})")


def _ints(text: str | None, option: str = "--layers") -> list[int] | None:
    """A comma-separated list of integers (e.g. --layers); None stays None."""
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        _fail(f"{option} {text!r}: expected comma-separated integers", usage=True)
    if not values:
        _fail(f"{option} {text!r}: no integers", usage=True)
    return values
