"""A model's depth and width from its configuration alone (a GGUF header, a `config.json`, an adapter's
base), so that a command can check its inputs against the model before loading any weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

from misdir.models.gguf import EMBEDDED, embedded_gguf, gguf_shape
from misdir.models.load import HUB_ID, check_hub_reachable, check_local_files, no_model_in, unknown_spec
from misdir.models.model import ModelLoadError, ModelShape


def model_shape(
    spec: str | os.PathLike[str] = EMBEDDED, *, base: str | None = None, revision: str | None = None
) -> ModelShape | None:
    """The depth and width of the model `spec` names (as `load_model` reads it), from its configuration
    alone: a GGUF header, a `config.json`, an adapter's base. Lets a command check its inputs against the
    model before loading it. A spec `load_model` would refuse raises `ModelLoadError` here too (a hub id at
    once when the hub is unreachable); None for a hub model not yet in the local cache (transformers
    downloads it later)."""
    spec = os.fspath(spec)
    if spec == EMBEDDED:
        return gguf_shape(embedded_gguf())
    if spec.startswith("em:"):
        from misdir.catalog import catalog_entry

        entry = catalog_entry(spec)
        return model_shape(entry.repo, base=base or entry.base, revision=revision)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf file; give a model directory or a .gguf")
        return gguf_shape(path)
    if path.is_dir():
        check_local_files(path)
        adapter, config = path / "adapter_config.json", path / "config.json"
        if not adapter.is_file() and not config.is_file():
            raise no_model_in(path)
    elif spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or not HUB_ID.match(spec):
        raise unknown_spec(spec)
    else:
        from huggingface_hub import try_to_load_from_cache

        found = {
            name: try_to_load_from_cache(spec, name, revision=revision)
            for name in ("adapter_config.json", "config.json")
        }
        if not any(isinstance(p, str) for p in found.values()):
            check_hub_reachable(spec, revision)
            return None
        adapter, config = (Path(p) if isinstance(p, str) else path / name for name, p in found.items())
    if adapter.is_file():
        base_spec = base or json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base_spec:
            raise ModelLoadError(f"adapter {spec} names no base model; pass base=")
        return model_shape(base_spec)
    data = json.loads(config.read_text())
    data = data.get("text_config", data) if "num_hidden_layers" not in data else data
    if "num_hidden_layers" not in data or "hidden_size" not in data:
        return None
    return ModelShape(int(data["num_hidden_layers"]), int(data["hidden_size"]))
