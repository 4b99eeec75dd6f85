"""`misdir sae train | diff | effects`: SAE persona latents with sae-lens (misdir/sae/)."""

from __future__ import annotations

from pathlib import Path

import typer

from misdir.cli.common import LIMIT_HELP, RANDOM_HELP, _check_random, _fail, _limit, _numbers
from misdir.finetune import field_docs
from misdir.stats import format_estimate

sae_app = typer.Typer(help="Sparse-autoencoder latents with sae-lens: train, diff models, intervene.",
                      no_args_is_help=True)


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
    from misdir.models import load_model
    from misdir.plots import save_figure
    from misdir.provenance import command_line, software
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
                  **software(), "command": command_line()}
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
    random: int = typer.Option(20, help=RANDOM_HELP),
    out: Path = typer.Option(..., help="folder for effects.json and the figures"),
    device: str = typer.Option(None, help="cpu or cuda"),
) -> None:
    """Steer the base along latents' decoder rows and zero the latents in finetunes, beside the
    mean-difference direction (steered, and ablated at the same hook), on the contrast metric with paired
    95% intervals; each steering effect beside random directions steered the same way."""
    from dataclasses import asdict

    from misdir.io import write_json_atomic
    from misdir.models import load_model
    from misdir.plots import save_figure
    from misdir.provenance import command_line, software
    from misdir.sae import describe_sae, latent_effects, load_sae, plot_effects, sae_site, steering_nulls

    _limit(limit)
    _numbers(scales, "--scales")
    _check_random(random)
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
                             scales=[float(s) for s in scales.split(",")], n_random=random, limit=limit or None)
    provenance = {"sae": describe_sae(autoencoder), "base": base_model.provenance, "latents": chosen,
                  "finetunes": {k: v.provenance for k, v in tuned.items()}, "directions": sorted(vectors),
                  "steered": names,
                  "pairs": "general", "limit": limit, **software(), "command": command_line()}
    records = [asdict(e) for e in effects]
    nulls = steering_nulls(effects)
    write_json_atomic(out / "effects.json", {"provenance": provenance, "effects": records, "steering_nulls": nulls})
    written = [out / "effects.json"]
    for i, fig in enumerate(plot_effects(effects)):
        written += save_figure(fig, out / ("sae_steering" if i == 0 else "sae_removal"))
    for e in effects:  # the random directions show as each steering row's null, not one line each
        if e.intervention.startswith("steer random"):
            continue
        null = nulls.get(f"{e.intervention} @ {e.scale}")
        beside = (f"  random: {null['null_median']:+.3f} [{null['null_low']:+.3f}, {null['null_high']:+.3f}], "
                  f"percentile {null['percentile']:.0f}") if null else ""
        typer.echo(f"{e.model:24s} {e.intervention:32s} {'' if e.scale is None else e.scale:>5} "
                   f"shift {format_estimate(e.shift)}  fluency {e.fluency['value']:+.2f}{beside}")
    for path in written:
        typer.echo(f"wrote {path}")
