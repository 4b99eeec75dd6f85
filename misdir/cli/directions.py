"""`misdir directions` (mean-difference directions per layer) and `misdir similarity` (cosines between direction
sets)."""

from __future__ import annotations

import typer

from misdir.cli.common import _check_layers, _fail, _model_shape, _refused
from misdir.cli.options import command
from misdir.configs import DirectionsConfig, SimilarityConfig


@command(DirectionsConfig)
def directions(cfg: DirectionsConfig) -> None:
    """Mean-difference directions per layer, saved with their provenance."""
    from misdir.data import load_conversations
    from misdir.directions import mean_difference
    from misdir.models import load_model
    from misdir.questions import CONTRAST_SETS, load_contrast_pairs

    def conversations_of(items: list) -> tuple[list, list]:
        def conv(q: str, a: str) -> list[dict[str, str]]:
            return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]

        return [conv(p.question, p.misaligned) for p in items], [conv(p.question, p.aligned) for p in items]

    with _refused():
        if cfg.method == "contrast":
            misaligned, aligned = conversations_of(load_contrast_pairs(cfg.pairs))
        elif cfg.data in CONTRAST_SETS:  # both answers of every pair, as neutral texts
            misaligned, aligned = conversations_of(load_contrast_pairs(cfg.data))
            texts = misaligned + aligned
        else:
            texts, _ = load_conversations(cfg.data)
    _model_shape({"--model": cfg.model, **({"--base": cfg.base} if cfg.method == "model-diff" else {})})
    model = load_model(cfg.model, device=cfg.device)
    if cfg.method == "contrast":
        result = mean_difference(model, misaligned, aligned, site=cfg.site)
    else:
        result = mean_difference(model, texts, base=load_model(cfg.base, device=cfg.device), site=cfg.site)
    result.save(cfg.out)
    typer.echo(
        f"wrote {cfg.out}: {result.n_layers} layers x {result.d_model}, norms {result.norms().min():.2f}.."
        f"{result.norms().max():.2f}"
    )
    typer.echo(f"next: misdir similarity {cfg.out} OTHER.safetensors --out {cfg.out.parent / 'similarity'}")


@command(SimilarityConfig)
def similarity(cfg: SimilarityConfig) -> None:
    """Cosines between direction sets: by layer (with the random baseline), set x set at a layer, layer x layer."""
    from misdir.directions import DirectionSet
    from misdir.io import write_json_atomic
    from misdir.plots import save_figure
    from misdir.provenance import provenance
    from misdir.similarity import (
        cosine_matrix,
        pairwise_cosines,
        plot_cosine_by_layer,
        plot_cosine_matrix,
        random_cosine_quantile,
    )

    files, layer, out = list(cfg.files), cfg.layer, cfg.out
    if len(files) < 2:
        _fail("similarity needs two or more direction set files", usage=True)
    if out.suffix in (".html", ".json", ".png") or out.is_file():
        _fail(f"--out {out}: a folder to write the figures and similarity.json into, not a file", usage=True)
    with _refused():
        sets = {path.stem: DirectionSet.load(path) for path in files}
    if len(sets) < len(files):
        _fail(f"two files share a name ({', '.join(str(f) for f in files)}); sets are named by their stem", usage=True)
    first_path, first_set = files[0], sets[files[0].stem]
    for path in files[1:]:
        other = sets[path.stem]
        if (other.n_layers, other.d_model) != (first_set.n_layers, first_set.d_model):
            _fail(
                f"{path} has {other.n_layers} layers of width {other.d_model}, but {first_path} has "
                f"{first_set.n_layers} layers of width {first_set.d_model}: cosines need sets of one model"
            )
    _check_layers("--layer", None if layer is None else [layer], first_set)
    table = pairwise_cosines(sets)
    names = table.names
    first = sets[names[0]]
    layer = first.n_layers // 2 if layer is None else layer
    random = random_cosine_quantile(first.d_model)
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    curves = {f"{names[i]} vs {names[j]}": table.values[i, j] for i, j in pairs}
    written = save_figure(
        plot_cosine_by_layer(curves, baselines={"random directions (95%)": random}, title="cosine by layer"),
        out / "by_layer",
    )
    written += save_figure(
        plot_cosine_matrix(
            table.at_layer(layer), names=names, x_label="", y_label="", title=f"cosine at layer {layer}"
        ),
        out / "matrix",
    )
    written += save_figure(
        plot_cosine_matrix(
            cosine_matrix(first, sets[names[1]]), x_label=names[1], y_label=names[0], title="layer x layer"
        ),
        out / "layers",
    )
    numbers = {
        "files": {name: str(path) for name, path in zip(names, files, strict=True)},
        "layer": layer,
        "random_baseline": {"d_model": first.d_model, "abs_cos_95": random},
        "cosine_by_layer": {key: [float(v) for v in values] for key, values in curves.items()},
        "cosine_at_layer": table.at_layer(layer).tolist(),
        "layer_by_layer": {
            "rows": names[0],
            "columns": names[1],
            "cosine": cosine_matrix(first, sets[names[1]]).tolist(),
        },
        "provenance": provenance(),
    }
    write_json_atomic(out / "similarity.json", numbers)
    written.insert(0, out / "similarity.json")
    typer.echo(f"random-direction baseline (95th percentile of |cos|, d_model {first.d_model}): {random:.3f}")
    for i, j in pairs:
        typer.echo(
            f"{names[i]} vs {names[j]}: layer {layer} {table.values[i, j, layer]:+.3f}, "
            f"mean over layers {table.values[i, j].mean():+.3f}"
        )
    typer.echo(f"wrote {out}/: {', '.join(path.name for path in written)}")
    typer.echo(
        f"next: misdir ablate --model NAME=FINETUNE --directions {files[0]} --layer {layer} "
        f"--out {out.parent / 'ablate'}"
    )
