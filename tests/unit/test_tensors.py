"""unit(): the one unit normalisation, against numpy in float64; signed_along(): the sign of a float64 dot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from misdir.tensors import signed_along, unit


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_unit_matches_numpy_and_keeps_zero_rows_zero(dtype):
    x = torch.randn(4, 3, 16, generator=torch.Generator().manual_seed(0)).to(dtype)
    x[1, 2] = 0
    got = unit(x)
    ref = x.double().numpy()
    norms = np.linalg.norm(ref, axis=-1, keepdims=True)
    expected = np.divide(ref, norms, out=np.zeros_like(ref), where=norms > 0)
    tolerance = {torch.float32: 1e-6, torch.float64: 1e-15, torch.bfloat16: 1e-2}[dtype]
    assert got.dtype == dtype
    np.testing.assert_allclose(got.double().numpy(), expected, atol=tolerance)
    assert torch.equal(got[1, 2], torch.zeros(16, dtype=dtype))


def test_unit_normalises_tiny_vectors_exactly():
    """A non-zero vector whose norm is below the 1e-12 floor used before still comes out with norm 1."""
    for value, dtype in ((1e-15, torch.float32), (1e-150, torch.float64)):
        x = torch.full((8,), value, dtype=dtype)
        assert unit(x).double().norm().item() == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_signed_along_points_v_along_the_reference(seed):
    """The sign is that of the float64 dot product; v's values are kept exactly (float32 v, float64 reference)."""
    g = torch.Generator().manual_seed(seed)
    v, reference = torch.randn(64, generator=g), torch.randn(64, generator=g, dtype=torch.float64)
    got = signed_along(v, reference)
    expected = v if (v.double() * reference).sum() >= 0 else -v
    assert torch.equal(got, expected) and got.dtype == torch.float32
    assert float(got.double() @ reference) >= 0
    assert torch.equal(signed_along(-v, reference), got)  # either sign of v lands on the same vector
