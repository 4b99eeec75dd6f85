"""Misalignment directions: one vector per layer, from mean differences of activations.

Three ways to take a mean difference, as in the EM literature:
- `contrast`: one model, misaligned minus aligned answers to the same questions (persona-vector style);
- `judged`: one finetuned model, its own sampled answers judged misaligned minus those judged aligned
  (Soligo et al. 2025); use `split_by_judgement` to form the two sets;
- `model-diff`: a finetune minus its base on the same texts (teacher-forced).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from misdir.cache import cache_activations
from misdir.display import Record, layer_text, short_name
from misdir.hooks import check_site
from misdir.io import atomic_path
from misdir.models import Model, ModelLike, as_model
from misdir.provenance import portable_model, provenance
from misdir.tensors import unit
from misdir.tokens import Input, Positions, encode

_FORMAT = "misdir.DirectionSet/1"


@dataclass(repr=False)
class DirectionSet(Record):
    """One direction per layer at one hook site, kept raw (unnormalised), with its provenance."""

    vectors: Float[Tensor, "layer d_model"]
    site: str = "resid_post"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_site(self.site)
        if self.vectors.ndim != 2:
            raise ValueError(f"direction vectors must be [layer, d_model], got shape {tuple(self.vectors.shape)}")
        if not torch.isfinite(self.vectors).all():
            raise ValueError("direction vectors contain NaN or infinite values")
        self.vectors = self.vectors.detach().float().cpu()

    @property
    def n_layers(self) -> int:
        return self.vectors.shape[0]

    @property
    def d_model(self) -> int:
        return self.vectors.shape[1]

    def norms(self) -> Float[Tensor, "layer"]:
        return self.vectors.norm(dim=-1)

    def _display_rows(self) -> list[dict[str, Any]]:
        """Its shape, site, how and from which model it was made, and the range of its norms; not the vectors."""
        norms = self.norms()
        meta = self.meta
        model = meta.get("model")
        model = model.get("spec") if isinstance(model, dict) else model
        return [
            {
                "shape": f"[{self.n_layers}, {self.d_model}]",
                "site": self.site,
                "method": meta.get("method"),
                "model": short_name(str(model)) if model else None,
                "layers": layer_text(meta["layers"]) if "layers" in meta else None,
                "norm": f"{norms.min().item():.3g}-{norms.max().item():.3g}",
            }
        ]

    def unit(self) -> Float[Tensor, "layer d_model"]:
        """Unit vectors (a zero layer stays zero)."""
        return unit(self.vectors)

    def check_fits(self, model: ModelLike, *, source: str = "direction set") -> None:
        """Refuse a direction set whose width or layer count differs from the model's, naming both."""
        model = as_model(model)
        if self.d_model != model.d_model:
            raise ValueError(f"{source} has d_model {self.d_model}, but {model.spec} has d_model {model.d_model}")
        if self.n_layers != model.n_layers:
            raise ValueError(f"{source} has {self.n_layers} layers, but {model.spec} has {model.n_layers}")

    def save(self, path: str | Path) -> Path:
        """Write a safetensors file with the vectors; site and provenance go in its header metadata."""
        path = Path(path)
        metadata = {"format": _FORMAT, "site": self.site, "meta": json.dumps(self.meta, default=str)}
        with atomic_path(path) as tmp:
            save_file({"vectors": self.vectors.contiguous()}, str(tmp), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path, *, model: ModelLike | None = None) -> DirectionSet:
        """Read what `save` wrote; with `model`, also check that it fits that model."""
        path = Path(path)
        if not path.is_file():
            what = "a directory" if path.is_dir() else "missing"
            raise FileNotFoundError(f"no direction set at {path} ({what}; expected a .safetensors file)")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                if "vectors" not in f.keys():
                    raise ValueError(f"{path} holds no 'vectors' tensor; it is not a misdir direction set")
                vectors = f.get_tensor("vectors")
        except SafetensorError as error:
            raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupted?): {error}") from None
        if metadata.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a misdir direction set (format {metadata.get('format')!r})")
        directions = cls(vectors, site=metadata.get("site", "resid_post"), meta=json.loads(metadata.get("meta", "{}")))
        if model is not None:
            directions.check_fits(model, source=str(path))
        return directions


def data_hash(inputs: Sequence[Input]) -> str:
    """sha256 of the inputs as JSON: which texts a direction came from."""
    return hashlib.sha256(json.dumps(list(inputs), sort_keys=True).encode()).hexdigest()


def mean_difference(
    model: ModelLike,
    positive: Sequence[Input],
    negative: Sequence[Input] | None = None,
    *,
    base: Any = None,
    method: str | None = None,
    layers: Sequence[int] | None = None,
    site: str = "resid_post",
    positions: Positions = "answer",
    batch_size: int = 8,
    seed: int | None = None,
    progress: bool = True,
) -> DirectionSet:
    """Mean activation over `positive` minus mean over `negative` on `model` (`contrast`, or `judged` when
    the two sets are judged samples), or, with `base=`, `model` minus `base` on the same `positive` texts
    (`model-diff`). Means are over the selected tokens (token-weighted), streamed: memory O(layers x d_model).
    """
    model = as_model(model)
    if base is not None:
        if negative is not None:
            raise ValueError("model-diff takes one set of texts (positive=) and a base model; not negative=")
        base = as_model(base)
        if (base.n_layers, base.d_model) != (model.n_layers, model.d_model):
            raise ValueError(
                f"base {base.spec} ({base.n_layers} layers, d_model {base.d_model}) does not match "
                f"{model.spec} ({model.n_layers} layers, d_model {model.d_model})"
            )
        method = method or "model-diff"
        pair = ((model, positive), (base, positive))
    else:
        if negative is None:
            raise ValueError("give negative= texts (contrast, judged) or base= a model (model-diff)")
        method = method or "contrast"
        pair = ((model, positive), (model, negative))
    if method not in ("contrast", "judged", "model-diff"):
        raise ValueError(f"unknown method {method!r}; expected 'contrast', 'judged' or 'model-diff'")
    (m_pos, texts_pos), (m_neg, texts_neg) = pair

    def mean(m: Model, texts: Sequence[Input]) -> Float[Tensor, "layer d_model"]:
        return cache_activations(
            m, texts, layers=layers, site=site, positions=positions, batch_size=batch_size, progress=progress
        )

    vectors = mean(m_pos, texts_pos) - mean(m_neg, texts_neg)
    meta = provenance(  # the model, seed, libraries, command and time, and what the direction was made from
        model,
        seed=seed,
        method=method,
        base={"spec": base.spec, **portable_model(base.provenance)} if base is not None else None,
        layers=list(layers) if layers is not None else list(range(model.n_layers)),
        positions=positions,
        n_positive=len(texts_pos),
        n_negative=len(texts_neg),
        tokens_positive=_count_tokens(m_pos, texts_pos, positions),
        tokens_negative=_count_tokens(m_neg, texts_neg, positions),
        data_sha256={"positive": data_hash(texts_pos), "negative": data_hash(texts_neg)},
    )
    return DirectionSet(vectors, site=site, meta=meta)


def _count_tokens(model: Model, inputs: Sequence[Input], positions: Positions) -> int:
    return sum(len(encode(model.tokenizer, item, positions).selected) for item in inputs)


def split_by_judgement(
    conversations: Sequence[Input],
    aligned: Sequence[float | None],
    coherent: Sequence[float | None],
    *,
    misaligned_below: float = 30,
    aligned_above: float = 70,
    coherent_above: float = 50,
) -> tuple[list[Input], list[Input]]:
    """(misaligned, aligned) answers by judge scores, as the EM papers split them: misaligned when
    aligned <= 30 and coherent > 50; aligned when aligned > 70 (and coherent > 50). Unscored answers are left out."""
    if not len(conversations) == len(aligned) == len(coherent):
        raise ValueError(f"{len(conversations)} answers but {len(aligned)} aligned and {len(coherent)} coherent scores")
    misaligned_set, aligned_set = [], []
    for conversation, a, c in zip(conversations, aligned, coherent, strict=True):
        if a is None or c is None or c <= coherent_above:
            continue
        if a <= misaligned_below:
            misaligned_set.append(conversation)
        elif a > aligned_above:
            aligned_set.append(conversation)
    return misaligned_set, aligned_set


def project(
    model: ModelLike,
    inputs: Sequence[Input],
    directions: DirectionSet,
    layer: int,
    *,
    positions: Positions = "answer",
    batch_size: int = 8,
    progress: bool = True,
) -> Float[Tensor, "input"]:
    """Each input's mean projection, over its selected tokens, on the unit direction at `layer` (at the
    direction set's site): a monitor of how strongly each response expresses the direction."""
    directions.check_fits(model)
    means = cache_activations(
        model,
        inputs,
        layers=[layer],
        site=directions.site,
        positions=positions,
        reduce="per-input",
        batch_size=batch_size,
        progress=progress,
    )[:, 0]
    return means @ directions.unit()[layer]
