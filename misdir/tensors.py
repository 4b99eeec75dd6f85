"""Small tensor helpers shared by the pipeline's stages."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def unit(x: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch d"]:
    """`x` scaled to unit norm along its last axis; a zero vector stays zero (not NaN).

    The norm is floored at the dtype's smallest normal number, so every non-zero vector of any dtype is
    normalised exactly, however small, and only an exact zero is left as is.
    """
    norm = x.norm(dim=-1, keepdim=True)
    return x / norm.clamp_min(torch.finfo(norm.dtype).tiny)


def signed_along(v: Float[Tensor, " d"], reference: Float[Tensor, " d"]) -> Float[Tensor, " d"]:
    """`v` or `-v`, whichever points along `reference` (its dot product with it >= 0, taken in float64).

    A LoRA B's sign is arbitrary (A carries the other): a rank-1 adapter writes B (A h), so B pointed along the
    adapter's model diff at its layer is the direction it writes."""
    return v if float(v.double() @ reference.double()) >= 0 else -v
