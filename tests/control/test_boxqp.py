"""Batched box QP: exact (active-set enumeration, m <= 3) and projected Newton (m > 3) against
the KKT conditions, including strongly coupled problems where a projected full Newton step
increases the objective (the case that used to stall box-DDP at a non-optimal point)."""

from __future__ import annotations

import pytest
import torch

from diffctl.control.boxqp import box_qp

D = torch.float64


def _problems(m: int, N: int = 200, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    L = torch.randn(N, m, m, generator=gen, dtype=D)
    H = L @ L.transpose(-1, -2) + 0.05 * torch.eye(m, dtype=D)
    H[: N // 2] = 0.05 * torch.eye(m, dtype=D) + torch.full((m, m), 1.0, dtype=D)  # coupled
    g = 3 * torch.randn(N, m, generator=gen, dtype=D)
    lo = -torch.rand(N, m, generator=gen, dtype=D)
    hi = torch.rand(N, m, generator=gen, dtype=D)
    return H, g, lo, hi


@pytest.mark.parametrize("m", [2, 3, 5])
def test_solution_satisfies_kkt(m):
    H, g, lo, hi = _problems(m)
    x, free, L, ok = box_qp(H, g, lo, hi, torch.zeros_like(g), iters=20 if m > 3 else 1)
    assert bool(ok.all())
    assert bool(((x >= lo) & (x <= hi)).all())
    grad = (H @ x.unsqueeze(-1)).squeeze(-1) + g
    at_lo, at_hi = x <= lo, x >= hi
    # stationarity on the free variables, the right sign of the multipliers on the clamped ones
    assert grad[~at_lo & ~at_hi].abs().max() < 1e-8
    assert bool((grad[at_lo] >= -1e-8).all()) and bool((grad[at_hi] <= 1e-8).all())
    assert bool((free == (~at_lo & ~at_hi) | (grad.abs() < 1e-8)).all())
    # the factor is the Cholesky factor of H on the free block
    Hf = torch.where(free.unsqueeze(-1) & free.unsqueeze(-2), H, torch.zeros_like(H))
    Hf = Hf + torch.diag_embed((~free).to(D))
    torch.testing.assert_close(L @ L.transpose(-1, -2), Hf)
