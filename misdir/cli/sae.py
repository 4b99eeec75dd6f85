"""`misdir sae train | diff | effects`: SAE persona latents with sae-lens (misdir/sae/)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from misdir.cli.common import _check_random, _fail
from misdir.cli.options import command
from misdir.configs import SaeDiffConfig, SaeEffectsConfig, SaeTrainCommandConfig
from misdir.stats import format_estimate

if TYPE_CHECKING:
    from misdir.models import Model

sae_app = typer.Typer(
    help="Sparse-autoencoder latents with sae-lens: train, diff models, intervene.", no_args_is_help=True
)


@sae_app.command("train")
@command(SaeTrainCommandConfig)
def sae_train(cfg: SaeTrainCommandConfig) -> None:
    """Train a TopK / BatchTopK SAE with sae-lens on MODEL's (and finetunes') activations at one layer."""
    from misdir.models import load_model
    from misdir.provenance import command_line
    from misdir.sae import train_sae, training_inputs

    device = cfg.training.device
    base = load_model(cfg.model, device=device)
    inputs, sources = training_inputs(list(cfg.data), n=cfg.n, tokenizer=base.tokenizer)
    tuned = [load_model(spec, device=device, merge=True) for spec in cfg.finetunes]
    result = train_sae(
        base, inputs, cfg.training, cfg.out, finetunes=tuned, sources=sources, work=cfg.work, command=command_line()
    )
    m = result.heldout
    typer.echo(
        f"wrote {result.out}: {result.train_tokens} training tokens, {result.steps} steps, "
        f"caching {result.seconds_caching:.0f} s, training {result.seconds_training:.0f} s; held-out "
        f"({m.n_tokens} tokens): variance explained {m.variance_explained:.3f}, L0 {m.l0:.1f}, "
        f"dead {m.dead_fraction:.1%} (trainer: {result.trainer_dead} dead)"
    )


def _sae(sae: str, sae_id: str | None) -> object:
    """The SAE of --sae (a directory or a release) and --sae-id, remembering where it came from."""
    from misdir.sae import load_sae

    autoencoder = load_sae(sae, sae_id)
    autoencoder._misdir_source = sae if sae_id is None else f"{sae}/{sae_id}"
    return autoencoder


def _sae_models(specs: Sequence[str], device: str | None) -> dict[str, Model]:
    from misdir.models import load_model

    return {Path(spec).name or spec: load_model(spec, device=device, merge=True) for spec in specs}


def _sae_directions(folder: Path | None, names: Sequence[str], layer: int) -> dict:
    from misdir.directions import DirectionSet

    if folder is None:
        return {}
    found = {name: folder / f"{name}.safetensors" for name in names}
    return {name: DirectionSet.load(path).vectors[layer] for name, path in found.items() if path.is_file()}


@sae_app.command("diff")
@command(SaeDiffConfig)
def sae_diff(cfg: SaeDiffConfig) -> None:
    """Each latent's mean activation and firing rate on the same texts in BASE and every finetune; latents
    ranked by their rise and by how consistently they rise in the finetunes and not in the controls."""
    from misdir.models import load_model
    from misdir.plots import save_figure
    from misdir.provenance import command_line, software
    from misdir.sae import (
        describe_sae,
        diff_latents,
        diff_record,
        plot_diff,
        sae_site,
        save_diff,
        training_inputs,
    )

    autoencoder = _sae(cfg.sae, cfg.sae_id)
    base_model = load_model(cfg.base, device=cfg.device)
    inputs, sources = training_inputs(list(cfg.data), n=cfg.n, tokenizer=base_model.tokenizer)
    layer, _ = sae_site(base_model, autoencoder)
    tuned, held = _sae_models(cfg.finetunes, cfg.device), _sae_models(cfg.controls, cfg.device)
    diff = diff_latents(autoencoder, base_model, tuned, inputs, controls=held)
    record = diff_record(
        diff,
        autoencoder,
        base_model.tokenizer,
        inputs,
        top=cfg.top,
        directions=_sae_directions(cfg.directions, [*tuned, *held], layer),
    )
    provenance = {
        "sae": describe_sae(autoencoder),
        "data": sources,
        "base": base_model.provenance,
        "finetunes": {k: v.provenance for k, v in tuned.items()},
        "controls": {k: v.provenance for k, v in held.items()},
        "directions": str(cfg.directions),
        **software(),
        "command": command_line(),
    }
    written = save_diff(diff, record, cfg.out, provenance)
    for i, fig in enumerate(plot_diff(record, diff.ranking.consistency, diff.ranking.mean_rise)):
        stem = "sae_top_latents" if i == 0 else "sae_rise_vs_consistency"
        written += save_figure(fig, (cfg.figures or cfg.out) / stem)
    typer.echo(f"{record['n_consistent']} latents rise in every finetune by more than in any control; top:")
    for r in record["latents"][: cfg.top]:
        cos = " ".join(f"{k} {v:+.2f}" for k, v in r["cosine"].items())
        typer.echo(
            f"  latent {r['latent']}: consistency {r['consistency']:+.3f}, "
            f"mean rise {r['mean_rise']:+.3f}{'; cos ' + cos if cos else ''}"
        )
    for path in written:
        typer.echo(f"wrote {path}")


@sae_app.command("effects")
@command(SaeEffectsConfig)
def sae_effects(cfg: SaeEffectsConfig) -> None:
    """Steer the base along latents' decoder rows and zero the latents in finetunes, beside the
    mean-difference direction (steered, and ablated at the same hook), on the contrast metric with paired
    95% intervals; each steering effect beside random directions steered the same way."""
    from dataclasses import asdict

    from misdir.io import write_json_atomic
    from misdir.models import load_model
    from misdir.plots import save_figure
    from misdir.provenance import command_line, software
    from misdir.sae import describe_sae, latent_effects, plot_effects, sae_site, steering_nulls

    _check_random(cfg.random)
    autoencoder = _sae(cfg.sae, cfg.sae_id)
    base_model = load_model(cfg.base, device=cfg.device)
    layer, _ = sae_site(base_model, autoencoder)
    tuned = _sae_models(cfg.finetunes, cfg.device)
    names = list(cfg.direction_names or tuned)
    vectors = _sae_directions(cfg.directions, list(dict.fromkeys([*tuned, *names])), layer)
    if not all(name in vectors for name in names):
        _fail(f"--directions {cfg.directions}: direction sets {names} not all there", usage=True)
    chosen = list(cfg.latents)
    effects = latent_effects(
        autoencoder,
        base_model,
        tuned,
        chosen,
        directions=vectors,
        steer_with=names,
        scales=list(cfg.scales),
        n_random=cfg.random,
        limit=cfg.limit or None,
    )
    provenance = {
        "sae": describe_sae(autoencoder),
        "base": base_model.provenance,
        "latents": chosen,
        "finetunes": {k: v.provenance for k, v in tuned.items()},
        "directions": sorted(vectors),
        "steered": names,
        "pairs": "general",
        "limit": cfg.limit,
        **software(),
        "command": command_line(),
    }
    records = [asdict(e) for e in effects]
    nulls = steering_nulls(effects)
    write_json_atomic(cfg.out / "effects.json", {"provenance": provenance, "effects": records, "steering_nulls": nulls})
    written = [cfg.out / "effects.json"]
    for i, fig in enumerate(plot_effects(effects)):
        written += save_figure(fig, cfg.out / ("sae_steering" if i == 0 else "sae_removal"))
    for e in effects:  # the random directions show as each steering row's null, not one line each
        if e.intervention.startswith("steer random"):
            continue
        null = nulls.get(f"{e.intervention} @ {e.scale}")
        beside = (
            (
                f"  random: {null['null_median']:+.3f} [{null['null_low']:+.3f}, {null['null_high']:+.3f}], "
                f"percentile {null['percentile']:.0f}"
            )
            if null
            else ""
        )
        typer.echo(
            f"{e.model:24s} {e.intervention:32s} {'' if e.scale is None else e.scale:>5} "
            f"shift {format_estimate(e.shift)}  fluency {e.fluency['value']:+.2f}{beside}"
        )
    for path in written:
        typer.echo(f"wrote {path}")
