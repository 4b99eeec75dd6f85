"""Published steering vectors as `DirectionSet`s, so that they are ablated, steered with and compared like any
direction misdir computes.

A release's own files are read by `misdir.catalog` (where its steering_vector.pt lies, what it holds); this
module builds the direction set from them, beside `misdir.directions`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from misdir.catalog import (
    STEERING_VECTOR_SITE,
    CatalogEntry,
    catalog_entry,
    read_adapter_config,
    read_steering_vector,
    steering_vector_file,
)
from misdir.directions import DirectionSet
from misdir.io import sha256_file
from misdir.models import ModelLike, as_model
from misdir.provenance import software


def load_steering_vector(
    source: str | os.PathLike[str],
    *,
    model: ModelLike | None = None,
    n_layers: int | None = None,
    checkpoint: int | None = None,
    revision: str | None = None,
) -> DirectionSet:
    """A published steering vector as a `DirectionSet` at site `mlp_out`, its one non-zero row at its layer.

    `source`: an `em:` catalog name of kind steering-vector, a hub repository id, a local copy of such a
    repository, or a `steering_vector.pt` file. The file is a torch pickle of
    `{"steering_vector": [d_model], "layer_idx": int, "alpha": float, ...}` (written by the authors'
    `finetune/steering_vector_toggle` trainer), read with `torch.load(weights_only=True)`: tensors and plain
    values only, no code.

    The vector is kept as saved and `meta["alpha"]` records its alpha, so that
    `steer(model, sv, sv.meta["layers"], scale=sv.meta["alpha"], relative="direction")` adds what the
    authors' code adds (`alpha * steering_vector` to layer `layer_idx`'s MLP output, at every position), and
    `ablate(model, sv, sv.meta["layers"])` projects it out there. Rows other than `meta["layers"]` are zero.

    The set has one row per layer of the base: `model`'s (whose width is checked), else `n_layers`, else
    those of the base's config.json (the catalog family's base for an `em:` name, else `base_model` in the
    repository's adapter_config.json). `checkpoint=N` reads the checkpoint in `checkpoints/checkpoint-N/`.
    """
    source = os.fspath(source)
    entry: CatalogEntry | None = None
    repo, base = source, None
    if source.startswith("em:"):
        entry = catalog_entry(source)
        if entry.kind != "steering-vector":
            raise ValueError(f"{source} is a {entry.kind}, not a steering vector: misdir.load_model loads it")
        repo, base = entry.repo, entry.base
    path, name = steering_vector_file(repo, checkpoint, revision=revision)
    vector, data = read_steering_vector(path)
    layer, d_model = int(data["layer_idx"]), vector.numel()

    if model is not None:
        model = as_model(model)
        if model.d_model != d_model:
            raise ValueError(
                f"{source}: the steering vector has d_model {d_model}, but {model.spec} has {model.d_model}"
            )
        n_layers, base = model.n_layers, model.spec
    elif n_layers is None:
        if base is None and Path(source).suffix != ".pt":
            config = read_adapter_config(source, revision=revision)
            base = (config or {}).get("base_model")
        if base is None:
            raise ValueError(f"{source}: no base model is known to size the set; pass model= or n_layers=")
        n_layers = _base_layers(base, d_model, source)
    if not 0 <= layer < n_layers:
        raise ValueError(f"{source}: the vector is for layer {layer}; the base has {n_layers} layers")

    vectors = torch.zeros(n_layers, d_model)
    vectors[layer] = vector
    meta = {
        "method": "published-steering-vector",
        "source": source,
        "repo": entry.repo if entry else (None if Path(source).exists() else source),
        "catalog_entry": entry.to_dict() if entry else None,
        "file": name,
        "file_sha256": sha256_file(path),
        "revision": revision,
        "checkpoint": checkpoint,
        "layers": [layer],
        "alpha": 1.0 if data["alpha"] is None else data["alpha"],
        "alpha_in_file": data["alpha"] is not None,
        "approach": data.get("approach"),
        "base": base,
        "site_from": "the authors' trainer adds alpha * steering_vector to layer_idx's mlp.down_proj output",
        **software(),
    }
    return DirectionSet(vectors, site=STEERING_VECTOR_SITE, meta=meta)


def _base_layers(base: str, d_model: int, source: str) -> int:
    """The base's layer count from its config.json, after checking its width against the vector's."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base).get_text_config()
    if config.hidden_size != d_model:
        raise ValueError(
            f"{source}: the steering vector has d_model {d_model}, but base {base} has {config.hidden_size}"
        )
    return int(config.num_hidden_layers)
