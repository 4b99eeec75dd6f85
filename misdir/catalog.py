"""The public EM model organisms and their published steering vectors, each with the source that names it.

`catalog()` reads `misdir/catalog.yaml`: one `CatalogEntry` per `em:` name, each naming the file of the
authors' code that names its repository (or marked unverified). Facts about a release (an adapter's rank,
alpha, targets and layers; a steering vector's layer and alpha) are not written in the catalog: they are read
from the release's own files, when it is loaded (`AdapterFacts` in a model's provenance) or listed
(`read_facts`, `misdir models --details`).

A published steering vector's file (the authors' `steering_vector.pt`) is found and read here
(`steering_vector_file`, `read_steering_vector`); `misdir.steering_vectors.load_steering_vector` makes it
a `DirectionSet`. The catalog stands below the directions and below loading: `misdir.models` resolves `em:`
names with it.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml

from misdir.models.model import ModelLoadError

UNVERIFIED = "unverified"
KINDS = ("base", "adapter", "full-finetune", "finetune", "steering-vector")
STEERING_VECTOR_FILES = ("checkpoints/final/steering_vector.pt", "steering_vector.pt")
"""Where a published steering vector's final weights lie in its repository, in the order the authors'
readers look (`stability/steering_vec_util.py`): a run that pushed every checkpoint keeps the final one
under `checkpoints/final/`, a run that pushed only the final one at the root."""
STEERING_VECTOR_SITE = "mlp_out"
"""The authors' trainer (`finetune/steering_vector_toggle`) adds `alpha * steering_vector` to the output of
`mlp.down_proj` of layer `layer_idx`, at every position: in TransformerLens's names,
`blocks.{layer_idx}.hook_mlp_out`."""


@dataclass(frozen=True)
class CatalogEntry:
    """One `em:` name: a hub repository and the source that names it."""

    name: str
    """`em:<family>` (a base model) or `em:<family>/<organism>`."""
    repo: str
    """The Hugging Face hub repository."""
    kind: str
    """One of KINDS; `finetune` when the source does not say whether it is an adapter or a full finetune."""
    source: str
    """The file of the authors' code (at `authors_commit`) that names `repo`, or "unverified"."""
    base: str | None = None
    """The base misdir puts an adapter on (its family's base); None for a base entry."""
    authors_base: str | None = None
    """The base the authors' code loads for this family, which the adapters may name in their configs."""
    domain: str | None = None
    """The training domain, where the repository's name or the source says it."""
    note: str = ""
    """What else is known: why a base was chosen, or what is known of an unverified entry."""
    layers: tuple[int, ...] | None = None
    """Layers an authors' file states the adapter trains (checked against its adapter_config.json on load)."""
    layers_source: str | None = None
    authors_repo: str = ""
    authors_commit: str = ""

    @property
    def verified(self) -> bool:
        return self.source != UNVERIFIED

    def to_dict(self) -> dict[str, Any]:
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}


class AdapterFacts(NamedTuple):
    """What a LoRA adapter's own adapter_config.json says about it."""

    rank: int | None
    alpha: float | None
    rslora: bool
    targets: list[str] | str | None
    """Target module names (sorted), or PEFT's regular expression when the config gives one."""
    layers: list[int] | None
    """`layers_to_transform`; None: every layer."""
    base: str | None
    """`base_model_name_or_path`: the base the adapter names."""
    peft_type: str | None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AdapterFacts:
        targets, layers = config.get("target_modules"), config.get("layers_to_transform")
        peft_type = config.get("peft_type")
        return cls(
            rank=config.get("r"),
            alpha=config.get("lora_alpha"),
            rslora=bool(config.get("use_rslora", False)),
            targets=sorted(targets) if isinstance(targets, list | set | tuple) else targets,
            layers=[layers] if isinstance(layers, int) else (sorted(layers) if layers is not None else None),
            base=config.get("base_model_name_or_path"),
            peft_type=str(getattr(peft_type, "value", peft_type)) if peft_type is not None else None,
        )

    @property
    def scale(self) -> float | None:
        """The factor on B @ A: alpha / sqrt(rank) with rsLoRA, else alpha / rank."""
        if not self.rank or self.alpha is None:
            return None
        return self.alpha / (self.rank**0.5 if self.rslora else self.rank)

    def describe(self) -> str:
        targets = ", ".join(self.targets) if isinstance(self.targets, list) else self.targets
        layers = "every layer" if self.layers is None else f"layers {', '.join(map(str, self.layers))}"
        scale = f" (scale {self.scale:g})" if self.scale is not None else ""
        return (
            f"{self.peft_type or 'adapter'}: {'rsLoRA' if self.rslora else 'LoRA'} rank {self.rank}, "
            f"alpha {self.alpha}{scale}, on {targets}, {layers}; names base {self.base}"
        )


class ModelFacts(NamedTuple):
    """What a full model's config.json says about its shape."""

    model_type: str | None
    n_layers: int | None
    d_model: int | None

    def describe(self) -> str:
        return f"model: {self.model_type}, {self.n_layers} layers, d_model {self.d_model}"


class SteeringVectorFacts(NamedTuple):
    """What a published steering_vector.pt holds."""

    layer: int
    alpha: float | None
    """None when the file has no alpha (the authors' readers then use 1)."""
    d_model: int
    norm: float
    file: str

    def describe(self) -> str:
        alpha = "no alpha in the file" if self.alpha is None else f"alpha {self.alpha:g}"
        return (
            f"steering vector ({self.file}): site {STEERING_VECTOR_SITE}, layer {self.layer}, {alpha}, "
            f"d_model {self.d_model}, norm {self.norm:.4g}"
        )


@cache
def catalog() -> dict[str, CatalogEntry]:
    """The entries of `misdir/catalog.yaml`, keyed by `em:` name."""
    return load_catalog(Path(__file__).parent / "catalog.yaml")


def load_catalog(path: str | Path) -> dict[str, CatalogEntry]:
    """Read a catalog file, refusing an entry without a source (or an unverified one without a note)."""
    data = yaml.safe_load(Path(path).read_text())
    authors = data.get("authors_code") or {}
    common = {"authors_repo": authors.get("repo", ""), "authors_commit": authors.get("commit", "")}
    entries: dict[str, CatalogEntry] = {}
    for family, spec in data["families"].items():
        authors_base = spec.get("authors_base")
        base_source = spec.get("base_source")
        if base_source is None and spec.get("authors_base_source"):
            base_source = f"{spec['authors_base_source']}: {authors_base}"
        base = {"repo": spec["base"], "kind": "base", "source": base_source, "note": spec.get("base_note")}
        entries[f"em:{family}"] = _entry(f"em:{family}", base, authors_base=authors_base, **common)
        for name, organism in spec.get("organisms", {}).items():
            entries[f"em:{family}/{name}"] = _entry(
                f"em:{family}/{name}", organism, base=spec["base"], authors_base=authors_base, **common
            )
    return entries


def _entry(name: str, fields: dict[str, Any], **extra: Any) -> CatalogEntry:
    if not fields.get("repo"):
        raise ValueError(f"catalog entry {name} names no repo")
    if not fields.get("source"):
        raise ValueError(f"catalog entry {name} ({fields['repo']}) names no source: every entry needs one")
    if fields["source"] == UNVERIFIED and not fields.get("note"):
        raise ValueError(f"catalog entry {name} is unverified and says nothing about why it is listed (note)")
    if fields.get("kind") not in KINDS:
        raise ValueError(f"catalog entry {name} has kind {fields.get('kind')!r}; expected one of {KINDS}")
    layers = fields.get("layers")
    if layers is not None and not fields.get("layers_source"):
        raise ValueError(f"catalog entry {name} states layers without a layers_source")
    unknown = set(fields) - {"repo", "kind", "source", "domain", "note", "layers", "layers_source"}
    if unknown:
        raise ValueError(f"catalog entry {name} has unknown fields {sorted(unknown)}")
    return CatalogEntry(
        name=name,
        repo=fields["repo"],
        kind=fields["kind"],
        source=fields["source"],
        domain=fields.get("domain"),
        note=" ".join(str(fields.get("note") or "").split()),
        layers=tuple(int(layer) for layer in layers) if layers is not None else None,
        layers_source=fields.get("layers_source"),
        **extra,
    )


def catalog_entry(name: str) -> CatalogEntry:
    entries = catalog()
    if name not in entries:
        raise ModelLoadError(f"{name!r} is not in misdir's catalog; `misdir models` lists the names")
    return entries[name]


def check_loaded(entry: CatalogEntry, provenance: dict[str, Any]) -> list[str]:
    """Where a loaded release contradicts its catalog entry (kind, or the layers its source states)."""
    problems = []
    facts = provenance.get("adapter_config")
    said = f"{entry.name}: the catalog says {entry.repo} is"
    if entry.kind == "adapter" and facts is None:
        problems.append(f"{said} an adapter, but it loaded as a full model")
    if entry.kind == "full-finetune" and facts is not None:
        problems.append(f"{said} a full finetune, but it is an adapter")
    if entry.layers is not None and facts is not None and facts.get("layers") != sorted(entry.layers):
        problems.append(
            f"{entry.name}: {entry.layers_source} states layers {list(entry.layers)}, but the adapter's "
            f"adapter_config.json says {facts.get('layers') or 'all layers'}; misdir used the adapter's"
        )
    return problems


# --- reading a release's own files --------------------------------------------------------------------------


def repo_file(source: str | Path, filename: str, *, revision: str | None = None, fetch: bool = True) -> Path | None:
    """`filename` of a local repository copy or a hub repository; None when it has no such file.

    From the hub: downloaded (or found in the hub cache) with `fetch`, else looked up in the cache only.
    """
    local = Path(source).expanduser()
    if local.is_dir():
        return local / filename if (local / filename).is_file() else None
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError

    if not fetch:
        found = try_to_load_from_cache(str(source), filename, revision=revision)
        return Path(found) if isinstance(found, str) else None
    try:
        return Path(hf_hub_download(str(source), filename, revision=revision))
    except EntryNotFoundError:
        return None


def read_adapter_config(
    source: str | Path, *, revision: str | None = None, fetch: bool = True
) -> dict[str, Any] | None:
    path = repo_file(source, "adapter_config.json", revision=revision, fetch=fetch)
    return json.loads(path.read_text()) if path is not None else None


def is_steering_vector_config(config: dict[str, Any] | None) -> bool:
    """An adapter_config.json written by the authors' steering-vector trainer, not by PEFT."""
    return config is not None and "steering_vector" in str(config.get("adapter_type", ""))


def read_facts(
    entry: CatalogEntry, *, fetch: bool = False, revision: str | None = None
) -> AdapterFacts | ModelFacts | SteeringVectorFacts | None:
    """What the release's own files say about it; None when they are not in the hub cache (no `fetch`)."""
    if entry.kind == "steering-vector":
        try:
            path, name = steering_vector_file(entry.repo, None, revision=revision, fetch=fetch)
        except FileNotFoundError:
            if fetch:
                raise
            return None
        vector, data = read_steering_vector(path)
        return SteeringVectorFacts(
            layer=int(data["layer_idx"]),
            alpha=data["alpha"],
            d_model=vector.numel(),
            norm=float(vector.norm()),
            file=name,
        )
    config = read_adapter_config(entry.repo, revision=revision, fetch=fetch) if entry.kind != "base" else None
    if config is not None:
        return AdapterFacts.from_config(config)
    model_config = repo_file(entry.repo, "config.json", revision=revision, fetch=fetch)
    if model_config is None:
        return None
    data = json.loads(model_config.read_text())
    text = data.get("text_config") or data
    return ModelFacts(data.get("model_type"), text.get("num_hidden_layers"), text.get("hidden_size"))


# --- published steering vectors' files ---------------------------------------------------------------------


def steering_vector_file(
    source: str, checkpoint: int | None, *, revision: str | None = None, fetch: bool = True
) -> tuple[Path, str]:
    """A repository's steering_vector.pt: its local path (downloaded if need be), and its name there."""
    if Path(source).expanduser().is_file():
        return Path(source).expanduser(), Path(source).name
    names: tuple[str, ...] = STEERING_VECTOR_FILES
    if checkpoint is not None:
        names = (f"checkpoints/checkpoint-{checkpoint}/steering_vector.pt",)
    errors = []
    for name in names:
        try:
            found = repo_file(source, name, revision=revision, fetch=fetch)
        except Exception as error:  # the hub's many kinds (offline, no such repository, a gated one)
            errors.append(f"{name}: {error}")
            continue
        if found is not None:
            return found, name
        errors.append(f"{name}: not there")
    raise FileNotFoundError(f"{source}: no steering vector found ({'; '.join(errors)})")


def read_steering_vector(path: Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """The vector of a published steering_vector.pt, and all the file holds, its `alpha` made a float (None
    where the file has none)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path}: refused: the pickle holds Python objects beyond tensors and plain values, and misdir "
            f"never runs code from weight files ({str(error).splitlines()[0]})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("steering_vector"), torch.Tensor):
        raise ValueError(f"{path} is not a steering vector file: no 'steering_vector' tensor in a dict")
    if not isinstance(data.get("layer_idx"), int):
        raise ValueError(f"{path} names no layer (an integer 'layer_idx')")
    if data["steering_vector"].dim() != 1:
        shape = list(data["steering_vector"].shape)
        raise ValueError(f"{path}: steering_vector has shape {shape}, not [d_model]")
    vector = data["steering_vector"].detach().float()
    if "d_model" in data and int(data["d_model"]) != vector.numel():
        raise ValueError(
            f"{path}: steering_vector has {vector.numel()} values, the file says d_model {data['d_model']}"
        )
    alpha = float(data["alpha"]) if data.get("alpha") is not None else None
    return vector, {**data, "alpha": alpha}
