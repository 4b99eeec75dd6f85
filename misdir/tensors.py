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
