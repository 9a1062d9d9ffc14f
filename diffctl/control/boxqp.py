"""Batched box-constrained QP by projected Newton (Tassa, Mansard & Todorov 2014, Alg. 3).

``min_x 1/2 x'Hx + g'x  s.t.  lower <= x <= upper`` for a batch of small problems, with a fixed
number of monotone projected-Newton iterations (no host synchronisation).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_qp"]


def _masked_hessian(H: Tensor, free: Tensor) -> Tensor:
    """``H`` on the free block, identity on the clamped one."""
    m = free.to(H.dtype)
    return H * m.unsqueeze(-1) * m.unsqueeze(-2) + torch.diag_embed(1 - m)


def box_qp(
    H: Tensor, g: Tensor, lower: Tensor, upper: Tensor, x0: Tensor, iters: int = 4
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Solve a batch of box QPs.

    Args:
        H: ``[N, m, m]`` symmetric positive definite; g: ``[N, m]``;
        lower, upper: ``[N, m]`` bounds (``lower <= upper``); x0: ``[N, m]`` warm start.
        iters: projected-Newton iterations (a 1-D problem is solved exactly in one).

    Returns:
        ``x [N, m]``, ``free [N, m]`` (bool: not clamped at the solution), the Cholesky factor of
        the free-block Hessian (identity on clamped rows) ``[N, m, m]``, and ``ok [N]`` (False
        where that Hessian was not positive definite).
    """
    m = H.shape[-1]
    x = torch.minimum(torch.maximum(x0, lower), upper)
    if m == 1:  # exact: minimiser of a convex parabola clamped to the interval
        h = H[..., 0]
        ok = h[..., 0] > 0
        hs = torch.where(h > 0, h, torch.ones_like(h))
        x = torch.minimum(torch.maximum(-g / hs, lower), upper)
        grad = h * x + g
        free = ~(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)))
        L = torch.where(free.unsqueeze(-1), hs.sqrt().unsqueeze(-1), torch.ones_like(H))
        return x, free, L, ok
    ok = torch.ones(H.shape[:-2], dtype=torch.bool, device=H.device)

    def value(z: Tensor) -> Tensor:
        return (z * (0.5 * (H @ z.unsqueeze(-1)).squeeze(-1) + g)).sum(-1)

    for _ in range(iters):
        grad = (H @ x.unsqueeze(-1)).squeeze(-1) + g
        free = ~(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)))
        L, info = torch.linalg.cholesky_ex(_masked_hessian(H, free))
        ok = ok & (info == 0)
        # Newton step on the free subspace, projected on the box; kept only if it decreases
        # the objective (a monotone variant of Tassa et al. 2014, Alg. 3, without backtracking)
        d = -torch.cholesky_solve((grad * free).unsqueeze(-1), L).squeeze(-1)
        cand = torch.minimum(torch.maximum(x + d, lower), upper)
        better = ok & (value(cand) <= value(x))
        x = torch.where(better.unsqueeze(-1), cand, x)
    grad = (H @ x.unsqueeze(-1)).squeeze(-1) + g
    free = ~(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)))
    L, info = torch.linalg.cholesky_ex(_masked_hessian(H, free))
    ok = ok & (info == 0)
    return x, free, L, ok
