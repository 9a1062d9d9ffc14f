"""Batched box-constrained QP by projected Newton (Tassa, Mansard & Todorov 2014, Alg. 3).

``min_x 1/2 x'Hx + g'x  s.t.  lower <= x <= upper`` for a batch of small problems, without host
synchronisation. Up to ``_ENUMERATE_MAX`` variables the problem is solved exactly by trying every
active set at once (each variable at its lower bound, upper bound or free: ``3^m`` equality-
constrained solves in one batched Cholesky, the best feasible one wins); larger problems take a
fixed number of monotone projected-Newton iterations.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

__all__ = ["box_qp"]

_ENUMERATE_MAX = 3  # exact active-set enumeration up to 3^3 = 27 candidates
_STEPS = 10  # projected line search: step sizes 1, 1/2, ..., 2^-9
_ARMIJO = 0.1  # sufficient-decrease fraction (Tassa et al. 2014, Alg. 3)


def _masked_hessian(H: Tensor, free: Tensor) -> Tensor:
    """``H`` on the free block, identity on the clamped one."""
    m = free.to(H.dtype)
    return H * m.unsqueeze(-1) * m.unsqueeze(-2) + torch.diag_embed(1 - m)


@functools.cache
def _patterns(
    m: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Every assignment of ``m`` variables to {free, lower, upper} (``P = 3^m``; pattern 0 is
    all free): masks ``free, at_lower, at_upper [P, m]`` (bool), ``free`` as ``dtype``, and the
    masked-Hessian pieces ``outer [P, m, m]`` (free x free) and ``diag [P, m, m]`` (clamped)."""
    grids = torch.meshgrid(*[torch.arange(3, device=device)] * m, indexing="ij")
    pat = torch.stack([gr.reshape(-1) for gr in grids], -1)
    free = (pat == 0).to(dtype)
    outer = free.unsqueeze(-1) * free.unsqueeze(-2)
    return pat == 0, pat == 1, pat == 2, free, outer, torch.diag_embed(1 - free)


def _enumerate(
    H: Tensor, g: Tensor, lower: Tensor, upper: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Exact box QP by active-set enumeration (convex ``H``): for each pattern the clamped
    variables sit at their bound and the free ones solve ``H_ff x_f = -(g_f + H_fc x_c)``; the
    optimum is the feasible candidate of least value (it is one of them, and all are feasible
    points). ``ok`` is False where ``H`` is not positive definite."""
    m = H.shape[-1]
    is_free, at_lo, at_hi, free, outer, diag = _patterns(m, H.device, H.dtype)
    lo, hi, gg = lower.unsqueeze(-2), upper.unsqueeze(-2), g.unsqueeze(-2)  # [N, 1, m]
    xc = torch.where(at_lo, lo, torch.where(at_hi, hi, 0.0))  # [N, P, m]
    L, info = torch.linalg.cholesky_ex(H.unsqueeze(-3) * outer + diag)  # [N, P, m, m]
    rhs = -(gg + (xc @ H)) * free  # H symmetric: (H xc')' = xc H
    x = xc + torch.cholesky_solve(rhs.unsqueeze(-1), L).squeeze(-1) * free
    value = (x * (0.5 * (x @ H) + gg)).sum(-1)  # [N, P]
    feasible = (info == 0) & ((x >= lo) & (x <= hi)).all(-1)
    best = torch.argmin(torch.where(feasible, value, torch.inf), dim=-1)  # [N]
    ok = info[..., 0] == 0  # the all-free pattern: H itself
    x = x.gather(-2, best[..., None, None].expand(*best.shape, 1, m)).squeeze(-2)
    L = L.gather(-3, best[..., None, None, None].expand(*best.shape, 1, m, m)).squeeze(-3)
    x = torch.where(ok.unsqueeze(-1), x, torch.clamp(torch.zeros_like(g), lower, upper))
    return x, is_free[best], L, ok


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
    if m <= _ENUMERATE_MAX:
        return _enumerate(H, g, lower, upper)
    ok = torch.ones(H.shape[:-2], dtype=torch.bool, device=H.device)
    # step sizes of the projected line search, all tried at once: [S]
    steps = 0.5 ** torch.arange(_STEPS, dtype=H.dtype, device=H.device)

    def value(z: Tensor) -> Tensor:  # z [N, S, m] -> [N, S] (H symmetric, so z H = (H z')')
        return (z * (0.5 * (z @ H) + g.unsqueeze(-2))).sum(-1)

    for _ in range(iters):
        grad = (H @ x.unsqueeze(-1)).squeeze(-1) + g
        free = ~(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)))
        L, info = torch.linalg.cholesky_ex(_masked_hessian(H, free))
        ok = ok & (info == 0)
        # Newton step on the free subspace, then a projected Armijo line search along
        # x(a) = clamp(x + a d) (Tassa et al. 2014, Alg. 3); without the search a projected full
        # step that increases the objective left x stuck at a non-optimal point
        d = -torch.cholesky_solve((grad * free).unsqueeze(-1), L).squeeze(-1)
        cand = x.unsqueeze(-2) + steps.unsqueeze(-1) * d.unsqueeze(-2)  # [N, S, m]
        cand = torch.minimum(torch.maximum(cand, lower.unsqueeze(-2)), upper.unsqueeze(-2))
        decrease = value(x.unsqueeze(-2)) - value(cand)
        accept = ok.unsqueeze(-1) & (
            decrease >= _ARMIJO * -(grad.unsqueeze(-2) * (cand - x.unsqueeze(-2))).sum(-1)
        )
        first = torch.argmax(accept.to(torch.int8), dim=-1)
        pick = cand.gather(-2, first[..., None, None].expand(*first.shape, 1, m)).squeeze(-2)
        x = torch.where(accept.any(-1, keepdim=True), pick, x)
    grad = (H @ x.unsqueeze(-1)).squeeze(-1) + g
    free = ~(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)))
    L, info = torch.linalg.cholesky_ex(_masked_hessian(H, free))
    ok = ok & (info == 0)
    return x, free, L, ok
