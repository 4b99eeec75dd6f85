"""What every command shares: the one-line error and exit status, and the input checks that need more than one
option (a model's depth, a direction file's shape) and so are not a config field's own (misdir.configs)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from misdir.configs import LIMIT_HELP, POSITIONS_HELP, RANDOM_HELP, JudgedConfig

if TYPE_CHECKING:
    from misdir.directions import DirectionSet
    from misdir.judged import JudgedMetric
    from misdir.models import ModelShape


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


def _check_random(n: int) -> None:
    """Warn (not refuse) when too few random directions are asked for to place an effect in their null."""
    if 0 < n < 20:
        _say_error(f"warning: --random {n}: fewer than 20 random directions cannot place an effect in its null")


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
            _fail(
                f"{option} {specs[option]} has {shape.n_layers} layers of width {shape.d_model}, but "
                f"{first} {specs[first]} has {reference.n_layers} of width {reference.d_model}"
            )
    return reference


def _check_layers(option: str, layers: Sequence[int] | None, shape: ModelShape | DirectionSet | None) -> None:
    """Every layer in [0, n_layers) of `shape` (a model or a direction set); unchecked when it is unknown."""
    if shape is None:
        return
    bad = [layer for layer in layers or () if not 0 <= layer < shape.n_layers]
    if bad:
        _fail(
            f"{option} {','.join(map(str, bad))}: out of range; the model has layers 0 to " f"{shape.n_layers - 1}",
            usage=True,
        )


def _check_directions(files: Sequence[Path], layer: int | None, shape: ModelShape | None) -> None:
    """Every direction file readable, of the model's width and depth, and with layer `layer` (--layer)."""
    from misdir.directions import DirectionSet

    for path in files:
        with _refused():
            directions = DirectionSet.load(path)
        if shape is not None and (directions.n_layers, directions.d_model) != (shape.n_layers, shape.d_model):
            _fail(
                f"{path} has {directions.n_layers} layers of width {directions.d_model}, but the model has "
                f"{shape.n_layers} layers of width {shape.d_model}: it was made on another model"
            )
        if layer is not None and not 0 <= layer < directions.n_layers:
            _fail(f"--layer {layer}: out of range; {path} has layers 0 to {directions.n_layers - 1}", usage=True)


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
    return (
        f" (random x{null['n_null']}: {null['null_median']:+.2f} [{null['null_low']:+.2f}, "
        f"{null['null_high']:+.2f}], percentile {null['percentile']:.0f})"
    )


__all__ = ["LIMIT_HELP", "POSITIONS_HELP", "RANDOM_HELP"]


def _judged_metric(cfg: JudgedConfig) -> JudgedMetric | None:
    """The judged metric --judge asks for (None: the contrast metric), its question file read now: a file that
    does not parse is refused before any model loads."""
    if cfg.judge is None:
        if cfg.dry_run:
            _fail("--dry-run plans a judged sweep's sampling and judge calls: give it with --judge", usage=True)
        return None
    from misdir.judged import JudgedMetric

    with _refused():
        metric = JudgedMetric(
            cfg.questions, cfg.samples, cfg.max_new_tokens, cfg.temperature, cfg.seed, cfg.limit or None
        )
        metric.load()
    return metric


def _judge_model(cfg: JudgedConfig) -> dict[str, str]:
    """A local judge's spec, checked like the models' (`--judge local:SPEC`)."""
    kind, _, name = (cfg.judge or "").partition(":")
    return {"--judge": name} if kind == "local" else {}


@contextmanager
def _judge_errors() -> Iterator[None]:
    """A judge that cannot be reached, or that failed on some answers after its retries, said in one line (exit
    1); what was sampled and judged is kept for the next run."""
    from misdir.judged import JudgeFailures

    try:
        yield
    except (ConnectionError, JudgeFailures) as error:
        _fail(error)
