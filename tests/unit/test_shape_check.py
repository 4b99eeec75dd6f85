"""The runtime shape checks the suite runs under (tests/shape_check.py) check, and are installed on misdir."""

from __future__ import annotations

import os

import pytest
import torch
from jaxtyping import Float, jaxtyped
from shape_check import arrays_only
from torch import Tensor


@jaxtyped(typechecker=arrays_only)
def _project(x: Float[Tensor, "batch d"], r: Float[Tensor, " d"]) -> Float[Tensor, " batch"]:
    return x @ r


@jaxtyped(typechecker=arrays_only)
def _wrong_return(x: Float[Tensor, "batch d"]) -> Float[Tensor, " d"]:
    return x.sum(-1)  # [batch], not [d]


def test_named_axes_must_agree_within_one_call():
    assert _project(torch.ones(3, 4), torch.ones(4)).shape == (3,)
    # jaxtyping reports what the checker refused, with the axis sizes it had bound
    with pytest.raises(TypeError, match=r"(?s)checking the parameters of .*_project.*'r': f32\[5\].*d=4"):
        _project(torch.ones(3, 4), torch.ones(5))
    with pytest.raises(TypeError, match=r"(?s)checking the parameters of .*_project.*'x': i64\[3,4\]"):
        _project(torch.ones(3, 4, dtype=torch.long), torch.ones(4))


def test_returns_are_checked():
    with pytest.raises(TypeError, match=r"(?s)checking the return value of .*_wrong_return.*f32\[3\]"):
        _wrong_return(torch.ones(3, 4))
    assert _wrong_return(torch.ones(4, 4)).shape == (4,)  # batch == d: the shape is right after all


@pytest.mark.skipif(os.environ.get("MISDIR_TYPECHECK", "1") == "0", reason="shape checks turned off")
def test_misdir_runs_under_the_checks():
    from misdir import sweep

    assert hasattr(sweep.random_directions, "__wrapped__")  # returns Float[Tensor, "n d_model"]: checked
