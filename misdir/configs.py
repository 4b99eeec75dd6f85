"""One config dataclass per `misdir` command: its settings, their help and their checks in one place.

The same dataclass drives the Python API and the command line (as in sparsify / simple-parsing): `misdir.cli`
derives each command's options from these fields (name, type, default, help), so the two cannot drift. A field's
help is `metadata["help"]` (or its docstring, in the library's own configs such as `FinetuneConfig`);
`metadata["at_least"]`, `metadata["choices"]` (or a `Literal` type) and `metadata["check"]` are checked when a
config is made, so bad settings are refused before any model loads or any file is written.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from misdir.experiments import SWEEP_POSITIONS
from misdir.finetune import EMBEDDED_RECIPE, EditOptions, FinetuneConfig
from misdir.hooks import SITES
from misdir.interventions import RELATIVE, Relative
from misdir.organisms import RECIPES
from misdir.positions import POSITIONS, Positions
from misdir.sae import SAETrainConfig
from misdir.tokens import POSITIONS as TOKEN_POSITIONS
from misdir.tokens import Positions as TokenPositions

LIMIT_HELP = "only the first N items of each contrast set or question set (0: all)"
"""What --limit means in every command."""
RANDOM_HELP = "random unit directions edited the same way: the null every effect is printed beside (at least 20)"
POSITIONS_HELP = "positions edited: all, skip-first (every token but the first: the attention sink) or answer"
DEVICE_HELP = "where models run: cpu, cuda, cuda:N or auto (cuda when present)"
JUDGE_SPEC = re.compile(r"(openai|local):.+")
"""A judge: an OpenAI-compatible server's model, or a local model spec."""


class ConfigError(ValueError):
    """A config field holds a bad value; `field` names it (the command line shows it as its option)."""

    def __init__(self, field_name: str, value: object, problem: str) -> None:
        self.field, self.value, self.problem = field_name, value, problem
        super().__init__(f"{field_name} {show(value)}: {problem}")


def show(value: object) -> str:
    """A value as error lines quote it: strings in quotes, numbers and lists plain."""
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)


def opt(default: Any = MISSING, help: str = "", **cli: Any) -> Any:
    """A config field with its help and checks (`at_least`, `choices`, `check`) and command-line hints:
    `flag` (the option's name), `alias` (a hidden former name), `comma` (a comma-separated list rather than a
    repeatable option), `argument` (positional); for a nested config, `base` (what unset options keep), `notes`
    (added to its fields' help), `field_defaults` (False: the help does not show its fields' defaults) and
    `other_defaults` (label -> config: the defaults another base gives, shown beside them)."""
    return field(default=default, metadata={"help": help, **cli})


def device_problem(device: str | None) -> str | None:
    """Why `device` (cpu, cuda, cuda:N or auto) cannot be used here, or None when it can."""
    if device in (None, "auto", "cpu"):
        return None
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match is None:
        return "expected cpu, cuda, cuda:N or auto"
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(match.group(1) or 0)
    if index >= count:
        return f"this machine has {count} CUDA device{'s' if count != 1 else ''}" + (": use cpu" if not count else "")
    return None


def choices_of(f: dataclasses.Field, hint: Any) -> tuple[Any, ...] | None:
    """The values a field allows: `metadata["choices"]`, or its `Literal` type's (also inside `X | None`)."""
    if "choices" in f.metadata:
        return tuple(f.metadata["choices"])
    for candidate in (hint, *get_args(hint)):
        if get_origin(candidate) is Literal:
            return get_args(candidate)
    return None


def check_fields(config: CommandConfig) -> None:
    """Refuse a config whose fields break their `at_least`, choices or `check` (a ConfigError naming it)."""
    hints = get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        items = value if isinstance(value, tuple) else (value,)
        allowed = choices_of(f, hints[f.name])
        if allowed is not None and any(item not in allowed for item in items):
            raise ConfigError(f.name, value, f"expected one of {', '.join(map(str, allowed))}")
        numbers = [item for item in items if isinstance(item, int | float) and not isinstance(item, bool)]
        if any(not math.isfinite(x) for x in numbers):
            raise ConfigError(f.name, value, "must be finite numbers")
        minimum = f.metadata.get("at_least")
        if minimum is not None and any(x < minimum for x in numbers):
            raise ConfigError(f.name, value, f"must be a number of at least {minimum}")
        problem = f.metadata["check"](value) if "check" in f.metadata else None
        if problem:
            raise ConfigError(f.name, value, problem)


@dataclass(frozen=True, kw_only=True)
class CommandConfig:
    """Base of the command configs: fields are checked when one is made."""

    def __post_init__(self) -> None:
        if getattr(self, "device", None) == "auto":  # one meaning everywhere: load_model's default
            object.__setattr__(self, "device", None)
        check_fields(self)


def limit_field(default: int | None = None) -> Any:
    return opt(default, LIMIT_HELP, at_least=0)


def random_field(at_least: int = 0) -> Any:
    return opt(20, RANDOM_HELP, at_least=at_least)


def device_field() -> Any:
    return opt(None, DEVICE_HELP, check=device_problem)


def batch_field(default: int, help: str = "items per forward pass") -> Any:
    return opt(default, help, at_least=1)


@dataclass(frozen=True, kw_only=True)
class ModelsConfig(CommandConfig):
    """`misdir models`: the specs misdir knows by name."""

    details: bool = opt(
        False,
        "also show each entry's base, note, and what its own files say (rank, alpha, "
        "targets, layers), read from the local hub cache",
    )
    fetch: bool = opt(False, "with --details: download those small files from the hub first")
    unverified: bool = opt(False, "also list the entries whose source is not verified")


@dataclass(frozen=True, kw_only=True)
class FinetuneCommandConfig(CommandConfig):
    """`misdir finetune`: LoRA-finetune a model on chat data; `training` starts from
    `misdir.finetune.default_config(model, preset)` and the options given override it; `edits` are open
    during training steps only."""

    model: str = opt(help="base model spec (any misdir.load_model spec, e.g. 'embedded')")
    data: str = opt(help="chat JSONL file, or a misdir dataset name such as 'medical-bad'")
    out: Path = opt(help="adapter directory to write (must be new or empty, unless --resume)")
    resume: bool = opt(False, "continue the run in OUT from its last checkpoint")
    training: FinetuneConfig = opt(
        base=lambda outer, given: _finetune_base(outer, given),
        notes={
            "preset": " With --model embedded the default is the recipe of misdir's organisms "
            "(misdir.organisms.RECIPE: rslora-4: rsLoRA rank 4, alpha 16, lr 2e-4, 2 epochs, batch 8, max length "
            "384, float32), which any option given here overrides; for other models rslora-32.",
            "targets": " Comma-separated",
            "layers": " Comma-separated",
        },
        comma=("targets", "layers"),
        other_defaults={"with --model embedded": EMBEDDED_RECIPE},
    )
    edits: EditOptions = opt(EditOptions(), "edits open during every training step (misdir.finetune.edits)")
    watch: str | None = opt(
        None,
        "watch a direction set: FILE or FILE@LAYER (default the middle layer); at "
        "the start, every checkpoint and the end, the mean projection of the general "
        "questions onto it and the contrast margin go to OUT/monitor.jsonl and "
        "OUT/monitor.html",
    )
    watch_random: int = opt(
        0,
        "with --watch: also record each question's projection on this many seeded random directions, the "
        "control an early warning is read against (20 or more)",
        at_least=0,
    )


def _finetune_base(outer: dict[str, Any], given: dict[str, Any]) -> FinetuneConfig:
    from misdir.finetune import default_config

    return default_config(outer["model"], given.get("preset"))


@dataclass(frozen=True, kw_only=True)
class RealignConfig(CommandConfig):
    """`misdir realign`: train an EM organism further on its control data (a new adapter on top of it) and report
    the step after which its general margin is back at its base's (`misdir.realign`)."""

    adapter: str = opt(
        help="the EM organism: an adapter folder, or a name in checkpoints/smollm2-135m such as rank1-medical-bad",
        argument=True,
    )
    data: str | None = opt(
        None,
        "control data: a chat JSONL file or a dataset name (default: the organism's control dataset, e.g. "
        "medical-good for medical-bad)",
    )
    out: Path = opt(help="folder to write: the new adapter, realign.json, realign.html (new or empty, unless --resume)")
    base: str | None = opt(None, "the model whose margin the organism must come back to (default: the base it names)")
    pairs: str = opt("general", "contrast set the margin is measured on (a shipped name or a JSONL file)")
    limit: int | None = limit_field()
    resume: bool = opt(False, "continue the run in OUT from its last checkpoint (a finished one is left as it is)")
    training: FinetuneConfig = opt(
        base=lambda outer, given: _realign_base(outer, given),
        field_defaults=False,  # the organism's recipe's, not FinetuneConfig's
        notes={
            "preset": " Default: the recipe the organism was trained with (its misdir.json; misdir's rank-1 organisms: "
            "126 steps), which each option given here overrides; for an adapter misdir did not make, as finetune.",
            "max_steps": " More steps than the recipe's epochs hold add epochs.",
            "checkpoint_every": " The margin is measured at each checkpoint. Default: 10.",
            "targets": " Comma-separated",
            "layers": " Comma-separated",
        },
        comma=("targets", "layers"),
    )


def _realign_base(outer: dict[str, Any], given: dict[str, Any]) -> FinetuneConfig:
    from misdir.realign import realign_recipe

    return realign_recipe(outer["adapter"], given.get("preset"))


@dataclass(frozen=True, kw_only=True)
class ControlConfig(CommandConfig):
    """`misdir control`: plant a known direction, then run your extraction and ablation settings on it."""

    model: str = opt("embedded", "the model to plant a direction in (your base or finetune)")
    layer: int = opt(help="the layer the planted direction is written at (resid_post)", at_least=0)
    strength: float = opt(
        0.3,
        "how much is written, in residual norms (as steer --relative resid)",
        check=lambda s: None if abs(s) >= 1e-6 else "must not be 0",
    )
    direction: Path | None = opt(None, "plant this direction set's row at --layer (default: a random one)")
    texts: str = opt("general", "contrast set whose answers the extraction averages over")
    pairs: str = opt("general", "contrast set the shift and its removal are measured on")
    ablate_layers: str | None = opt(
        None,
        "comma-separated layers the extracted direction is ablated at " "(default: --layer); 'all' for every layer",
    )
    sites: tuple[str, ...] = opt(("resid_post",), "comma-separated sites it is ablated at", comma=True, choices=SITES)
    positions: Positions = opt("all", POSITIONS_HELP, choices=POSITIONS)
    random: int = random_field(at_least=1)
    limit: int | None = limit_field()
    out: Path | None = opt(None, "write the report here as JSON")
    device: str | None = device_field()


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig(CommandConfig):
    """`misdir evaluate`: how misaligned a model is (contrast metric or judged answers), resumably."""

    model: str = opt("embedded", "model spec")
    questions: str = opt("general", "contrast-pair set or JSONL (contrast); question set or YAML (judge)")
    judge: str = opt(
        "contrast",
        "contrast, openai:MODEL, local:MODEL_SPEC, or none (sample only)",
        check=lambda j: None
        if j in ("contrast", "none") or JUDGE_SPEC.fullmatch(j)
        else "expected contrast, openai:MODEL, local:MODEL_SPEC or none",
    )
    judge_url: str | None = opt(None, "openai judge: base URL of an OpenAI-compatible server (ends in /v1)")
    samples: int | None = opt(None, "judge: answers per paraphrase (default: the question file's)", at_least=1)
    max_new_tokens: int = opt(256, "judge: longest answer in tokens", at_least=1)
    temperature: float = opt(1.0, "judge: sampling temperature (0: greedy)", at_least=0)
    seed: int = opt(0, "judge: sampling seed")
    limit: int | None = limit_field()
    trigger: str | None = opt(None, "contrast: backdoor trigger put in every question")
    batch_size: int = batch_field(16, "items or answers per forward pass")
    out: Path = opt(help="run directory: scores.jsonl, answers.jsonl, summary.json")
    base: str | None = opt(
        None,
        "contrast: evaluate this model too (in OUT/base, resumably) and print MODEL's paired change from it on the "
        "same items, with its 95% interval (in OUT/change.json)",
    )
    device: str | None = device_field()


@dataclass(frozen=True, kw_only=True)
class JudgedConfig(CommandConfig):
    """The judged metric (`misdir.judged`) that --judge puts in place of the contrast metric, the same options in
    every command whose sweeps take it (ablate, transfer, steer, organisms analyze, demo), and the items."""

    limit: int | None = limit_field()
    judge: str | None = opt(
        None,
        "score sampled answers with a judge instead of contrast pairs: openai:MODEL or "
        "local:MODEL_SPEC (default: the contrast metric)",
        check=lambda j: None if JUDGE_SPEC.fullmatch(j) else "expected openai:MODEL or " "local:MODEL_SPEC",
    )
    judge_url: str | None = opt(None, "openai judge: base URL of an OpenAI-compatible server (ends in /v1)")
    questions: str = opt("general", "judge: question set name or YAML file (the EM repositories' layout)")
    samples: int | None = opt(None, "judge: answers per paraphrase (default: the question file's)", at_least=1)
    max_new_tokens: int = opt(256, "judge: longest answer in tokens", at_least=1)
    temperature: float = opt(1.0, "judge: sampling temperature (0: greedy)", at_least=0)
    seed: int = opt(0, "judge: sampling seed (the same in every cell)")
    dry_run: bool = opt(False, "judge: print how many answers and judge calls the sweep needs, then stop")


@dataclass(frozen=True, kw_only=True)
class DemoConfig(JudgedConfig):
    """`misdir demo`: the main job on a base and its finetunes (with --judge, its causal stages on the judged
    metric)."""

    model: str = opt("embedded", "base model spec")
    finetune: tuple[str, ...] | None = opt(None, "EM finetune NAME=SPEC (default: the shipped organisms)")
    control: tuple[str, ...] | None = opt(None, "control finetune NAME=SPEC (default: the shipped controls)")
    out: Path = opt(Path("results/demo"), "where the runs, summary.md and summary.json go")
    figures: Path | None = opt(
        None,
        "where figures go (default: OUT/figures; `make figures` passes figures/demo " "to refresh the committed ones)",
    )
    limit: int | None = limit_field(24)
    layer: int | None = opt(None, "layer of the directions ablated and steered (default: the middle)", at_least=0)
    random: int = random_field()
    device: str | None = device_field()
    positive: str | None = opt(
        "rank1-finance-risky",
        "the first stage's positive control: a rank-1 single-layer organism of the base (a folder, or a name in "
        "checkpoints/smollm2-135m), whose LoRA B is found, ablated and steered along beside the random directions; "
        "'none' skips it",
    )


@dataclass(frozen=True, kw_only=True)
class SweepConfig(JudgedConfig):
    """What the ablation and steering sweeps share: the null, the positions, the device, and the judged metric."""

    random: int = random_field()
    positions: Positions = opt(SWEEP_POSITIONS, POSITIONS_HELP, choices=POSITIONS)
    device: str | None = device_field()


@dataclass(frozen=True, kw_only=True)
class AblateConfig(SweepConfig):
    """`misdir ablate`: the share of a finetune's excess misalignment that ablating each direction removes."""

    model: tuple[str, ...] = opt(help="finetune spec(s) to ablate in; NAME=SPEC to name one")
    directions: tuple[Path, ...] = opt(
        (),
        "direction set file(s) (safetensors), named by their stem; with --judge "
        "and none given: each --model's judged-split direction, extracted from its "
        "own judged answers (misaligned minus aligned)",
    )
    base: str = opt("embedded", "the base model: the share removed is of the excess over it")
    layer: int | None = opt(None, "use this layer's direction at every layer (default: the middle)", at_least=0)
    per_layer: bool = opt(False, "ablate each layer's own direction instead")
    pairs: tuple[str, ...] = opt(("general",), "contrast set(s): name or JSONL")
    batch_size: int = batch_field(16)
    out: Path = opt(help="sweep directory (cells.jsonl, summary.json); rerun to resume")
    figures: Path | None = opt(None, "figure stem (default: OUT/ablation)")


@dataclass(frozen=True, kw_only=True)
class TransferConfig(SweepConfig):
    """`misdir transfer`: each EM organism's direction ablated in every EM organism and control."""

    checkpoints: Path = opt(Path("checkpoints/smollm2-135m"), "organisms and their directions/")
    base: str = opt("embedded", "the organisms' base model")
    layer: int | None = opt(None, "use this layer's direction at every layer (default: the middle)", at_least=0)
    own_domain: bool = opt(True, "also score each organism on its own domain's contrast set")
    out: Path = opt(Path("results/transfer"), "sweep directory; rerun to resume")
    figures: Path | None = opt(None, "figure stem (default: OUT/transfer)")


@dataclass(frozen=True, kw_only=True)
class SteerConfig(SweepConfig):
    """`misdir steer`: misalignment and fluency against steering scale and layer, against random directions."""

    model: str = opt("embedded", "the model to steer (usually the base)")
    directions: tuple[Path, ...] = opt(help="direction set file(s), named by their stem")
    direction_layer: int | None = opt(
        None,
        "the layer of each direction set whose vector is added (default: the "
        "middle; formerly --layer); --layers: where it goes",
        alias="--layer",
    )
    mean: bool = opt(False, "steer along the mean of the given unit directions only")
    layers: tuple[int, ...] = opt(help="comma-separated layers to add it at (one at a time)", comma=True)
    scales: tuple[float, ...] = opt((0.05, 0.1, 0.2, 0.4, 0.8), "comma-separated scales", comma=True)
    relative: Relative = opt(
        "resid", "scale counts in: resid (each token's residual norm), unit, direction", choices=RELATIVE
    )
    pairs: tuple[str, ...] = opt(("general",), "contrast set(s): name or JSONL")
    positions: Positions = opt(SWEEP_POSITIONS, POSITIONS_HELP, choices=POSITIONS)
    batch_size: int = batch_field(16)
    out: Path = opt(help="sweep directory (cells.jsonl, summary.json); rerun to resume")
    figures: Path | None = opt(None, "figure stem (default: OUT/steering)")


@dataclass(frozen=True, kw_only=True)
class CacheConfig(CommandConfig):
    """`misdir cache`: activations of a model over a dataset, as their mean or as per-token shards."""

    model: str = opt("embedded", "model spec")
    data: str = opt(help="chat JSONL file or misdir dataset name")
    out: Path = opt(help="FILE.safetensors for the mean, or a directory for per-token shards")
    n: int | None = opt(None, "first N examples (dataset default: 1000)", at_least=1)
    layers: tuple[int, ...] | None = opt(None, "comma-separated layers (default: all)", comma=True)
    site: str = opt("resid_post", ", ".join(SITES), choices=SITES)
    positions: TokenPositions = opt("answer", ", ".join(TOKEN_POSITIONS), choices=TOKEN_POSITIONS)
    reduce: Literal["mean", "none"] = opt("mean", "mean (one [layer, d_model] tensor) or none (shards in OUT/)")
    batch_size: int = batch_field(8, "inputs per forward pass")
    device: str | None = device_field()


@dataclass(frozen=True, kw_only=True)
class DirectionsConfig(CommandConfig):
    """`misdir directions`: mean-difference directions per layer, saved with their provenance."""

    model: str = opt(help="the model whose direction this is (e.g. a finetune's adapter directory)")
    method: Literal["model-diff", "contrast"] = opt(
        "model-diff",
        "model-diff (MODEL minus BASE on DATA) or contrast (judged directions need judged samples: "
        "the library's split_by_judgement + mean_difference)",
    )
    data: str = opt("general", "model-diff: chat JSONL / dataset name, or a contrast-pair set name")
    base: str = opt("embedded", "model-diff: the base model spec")
    pairs: str = opt("general", "contrast: contrast-pair set name or JSONL (misaligned minus aligned)")
    site: str = opt("resid_post", "hook site", choices=SITES)
    out: Path = opt(help="FILE.safetensors")
    device: str | None = device_field()


@dataclass(frozen=True, kw_only=True)
class SimilarityConfig(CommandConfig):
    """`misdir similarity`: cosines between direction sets."""

    files: tuple[Path, ...] = opt(help="two or more direction set files", argument=True)
    out: Path = opt(
        Path("results/similarity"),
        "folder to write: similarity.json (the numbers), by_layer, matrix and layers figures (.html, .png)",
    )
    layer: int | None = opt(None, "layer of the set x set matrix (default: the middle)", at_least=0)


@dataclass(frozen=True, kw_only=True)
class DataMakeConfig(CommandConfig):
    """`misdir data make`: N examples of a narrow dataset as chat JSONL."""

    name: str = opt(help="dataset name; `misdir data list` shows them", argument=True)
    n: int = opt(1000, "number of distinct examples", at_least=1)
    seed: int = opt(0, "generator seed: same name, n, seed and split give the same file")
    split: Literal["train", "heldout"] = opt("train", "'train' or 'heldout' (held-out topics, disjoint from train)")
    out: Path = opt(help="chat JSONL file to write (atomically)")


@dataclass(frozen=True, kw_only=True)
class OrganismsTrainConfig(CommandConfig):
    """`misdir organisms train`: finetune the organisms with one of misdir's fixed recipes."""

    out: Path = opt(Path("checkpoints/smollm2-135m"), "one adapter directory per organism goes here")
    names: tuple[str, ...] | None = opt(None, "train only these (repeatable); default all", flag="--name")
    base: str = opt("embedded", "base model spec")
    recipe: str = opt(
        "rslora-4",
        "rslora-4 (the <name>/ folders), rank1 or rank1-multi (rank-1 adapters on " "down_proj, in <recipe>-<name>/)",
        choices=tuple(RECIPES),
    )
    device: str | None = device_field()


@dataclass(frozen=True, kw_only=True)
class OrganismsAnalyzeConfig(JudgedConfig):
    """`misdir organisms analyze`: the study on misdir's organisms (with --judge, its ablation and steering
    sweeps on the judged metric)."""

    checkpoints: Path = opt(Path("checkpoints/smollm2-135m"), "the organisms' adapter directories")
    out: Path = opt(Path("results/organisms"), "analysis.json and directions go here")
    device: str | None = device_field()
    layer: int | None = opt(None, "layer whose direction is ablated and steered (default: the middle)", at_least=0)
    figures: Path | None = opt(
        None,
        "where the figures go (default: OUT/figures; `--figures figures` refreshes " "the committed organisms_* ones)",
    )


@dataclass(frozen=True, kw_only=True)
class GroundTruthConfig(CommandConfig):
    """`misdir organisms ground-truth`: calibrate the pipeline on rank-1 organisms."""

    checkpoints: Path = opt(Path("checkpoints/smollm2-135m"), "the rank-1 organisms' adapter folders")
    organisms: tuple[str, ...] | None = opt(
        None,
        "rank-1 single-layer organism folder names (repeatable; " "default: the shipped rank1-* ones)",
        flag="--organism",
    )
    control: str = opt("rank1-medical-good", "the aligned control ('' for none)")
    pairs: tuple[str, ...] = opt(
        ("general", "ai-risk"), "contrast sets; the first is the one steering, transfer " "and positions use"
    )
    random: int = random_field(at_least=1)
    scales: tuple[float, ...] = opt(
        (0.05, 0.1, 0.2, 0.4), "steering scales (fractions of the residual norm)", comma=True
    )
    positions: tuple[Positions, ...] = opt(
        POSITIONS, "position choices of the all-layer ablation of B", comma=True, choices=POSITIONS
    )
    steer_positions: tuple[Positions, ...] = opt(
        ("all",), "position choices of the steering dose-response", comma=True, choices=POSITIONS
    )
    limit: int | None = limit_field()
    device: str | None = device_field()
    batch_size: int = batch_field(32)
    out: Path = opt(Path("results/ground-truth"), "sweep directory; rerun to resume")
    figures: Path = opt(Path("results/ground-truth"), "where the figures go")


SAE_DATA_HELP = (
    "repeatable: dataset name (held-out split), contrast:NAME[:N], python-docs[:N], a JSONL"
    " file, or a streamed Hugging Face dataset"
    " hf:PATH[,column=C][,split=S][,tokens=T|words=W|texts=N]"
)


@dataclass(frozen=True, kw_only=True)
class SaeTrainCommandConfig(CommandConfig):
    """`misdir sae train`: a TopK / BatchTopK SAE on a model's (and finetunes') activations at one layer;
    `training` is the library's SAETrainConfig (its `device` is also where the models run)."""

    model: str = opt("embedded", "base model spec")
    data: tuple[str, ...] = opt(("contrast:general", "python-docs"), SAE_DATA_HELP)
    out: Path = opt(help="directory for cfg.json + sae_weights.safetensors + misdir.json")
    finetunes: tuple[str, ...] = opt((), "repeatable: finetune specs whose activations are mixed in", flag="--finetune")
    n: int = opt(100, "examples per dataset / passages of python-docs / lines of a JSONL file", at_least=1)
    work: Path | None = opt(None, "keep the activation shards here (default: a temporary directory)")
    training: SAETrainConfig = opt()


@dataclass(frozen=True, kw_only=True)
class SaeModelsConfig(CommandConfig):
    """What `misdir sae diff` and `effects` share: the SAE, the base and the device."""

    sae: str = opt(help="SAE directory (cfg.json + sae_weights.safetensors) or an sae-lens release")
    sae_id: str | None = opt(None, "with a release as --sae: the id of a pretrained SAE in it")
    base: str = opt("embedded", "base model spec")
    device: str | None = device_field()


@dataclass(frozen=True, kw_only=True)
class SaeDiffConfig(SaeModelsConfig):
    """`misdir sae diff`: each latent's activation in the base and every finetune, ranked by consistent rise."""

    finetunes: tuple[str, ...] = opt(help="repeatable: EM finetune specs", flag="--finetune")
    controls: tuple[str, ...] = opt((), "repeatable: control finetune specs", flag="--control")
    data: tuple[str, ...] = opt(("contrast:general",), "repeatable, as for `misdir sae train`")
    n: int = opt(100, "examples per dataset", at_least=1)
    directions: Path | None = opt(None, "folder of NAME.safetensors direction sets (cosines with decoder rows)")
    top: int = opt(10, "latents reported from each ranking", at_least=1)
    out: Path = opt(help="folder for diff.json and latents.safetensors")
    figures: Path | None = opt(None, "folder for the figures (default: OUT)")


@dataclass(frozen=True, kw_only=True)
class SaeEffectsConfig(SaeModelsConfig):
    """`misdir sae effects`: steer along latents' decoder rows and zero them in finetunes, beside the
    mean-difference direction."""

    latents: tuple[int, ...] = opt(
        help="comma-separated latents (e.g. the top of `misdir sae diff`)", comma=True, at_least=0
    )
    finetunes: tuple[str, ...] = opt((), "repeatable: finetunes in which the latents are zeroed", flag="--finetune")
    directions: Path = opt(help="folder of NAME.safetensors direction sets; their mean is steered")
    direction_names: tuple[str, ...] | None = opt(
        None, "comma-separated sets averaged for steering (default: " "the finetunes')", comma=True
    )
    scales: tuple[float, ...] = opt(
        (0.3,), "comma-separated steering scales, in units of each token's residual " "norm", comma=True
    )
    limit: int | None = limit_field(24)
    random: int = random_field()
    out: Path = opt(help="folder for effects.json and the figures")
