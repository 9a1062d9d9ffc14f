"""LQR: DARE against scipy, finite-horizon LQR against cvxpy, gradients, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from cvxpy_reference import cvxpy_lq

from diffctl.control import dare, lqr

torch.set_num_threads(1)
D = torch.float64


def _random_system(gen: torch.Generator, nx: int, nu: int, batch: int):
    A = torch.randn(batch, nx, nx, generator=gen, dtype=D) * 0.6
    Bm = torch.randn(batch, nx, nu, generator=gen, dtype=D)
    L = torch.randn(batch, nx, nx, generator=gen, dtype=D)
    Q = L @ L.transpose(-1, -2) + 0.1 * torch.eye(nx, dtype=D)
    M = torch.randn(batch, nu, nu, generator=gen, dtype=D)
    R = M @ M.transpose(-1, -2) + 0.5 * torch.eye(nu, dtype=D)
    return A, Bm, Q, R


def test_dare_matches_scipy():
    gen = torch.Generator().manual_seed(0)
    A, Bm, Q, R = _random_system(gen, 4, 2, 6)
    A[0] *= 3.0  # an unstable (but controllable) example
    res = dare(A, Bm, Q, R)
    assert bool(res.converged.all())
    for i in range(A.shape[0]):
        P = scipy.linalg.solve_discrete_are(A[i].numpy(), Bm[i].numpy(), Q[i].numpy(), R[i].numpy())
        K = np.linalg.solve(
            R[i].numpy() + Bm[i].numpy().T @ P @ Bm[i].numpy(), Bm[i].numpy().T @ P @ A[i].numpy()
        )
        np.testing.assert_allclose(res.P[i].numpy(), P, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(res.K[i].numpy(), K, rtol=1e-6, atol=1e-6)


def test_long_horizon_lqr_gain_tends_to_dare_gain():
    gen = torch.Generator().manual_seed(1)
    A, Bm, Q, R = _random_system(gen, 3, 1, 2)
    res = dare(A, Bm, Q, R)
    C = torch.block_diag(Q[0], R[0]).expand(1, 1, 4, 4)
    F = torch.cat([A, Bm], -1)[None]
    C = torch.stack([torch.block_diag(Q[i], R[i]) for i in range(2)])[None]
    sol = lqr(torch.zeros(2, 3, dtype=D), C, torch.zeros(4, dtype=D), F, T=200, C_final=Q)
    torch.testing.assert_close(sol.K[0], -res.K, rtol=1e-8, atol=1e-8)


def test_dare_unstabilisable_is_reported_not_raised():
    A = torch.diag(torch.tensor([2.0, 0.5], dtype=D))
    Bm = torch.tensor([[0.0], [1.0]], dtype=D)  # unstable mode uncontrollable
    res = dare(A, Bm, torch.eye(2, dtype=D), torch.eye(1, dtype=D), max_iter=30)
    assert not bool(res.converged.all())


def test_finite_horizon_lqr_equals_cvxpy_time_varying():
    gen = torch.Generator().manual_seed(2)
    T, B, nx, nu = 6, 3, 3, 2
    n = nx + nu
    L = torch.randn(T, B, n, n, generator=gen, dtype=D)
    C = L @ L.transpose(-1, -2) + 0.1 * torch.eye(n, dtype=D)
    c = torch.randn(T, B, n, generator=gen, dtype=D)
    F = torch.randn(T, B, nx, n, generator=gen, dtype=D) * 0.5
    f = torch.randn(T, B, nx, generator=gen, dtype=D) * 0.1
    CT = torch.eye(nx, dtype=D).expand(B, nx, nx) * 2.0
    cT = torch.randn(B, nx, generator=gen, dtype=D)
    x0 = torch.randn(B, nx, generator=gen, dtype=D)
    sol = lqr(x0, C, c, F, f, C_final=CT, c_final=cT)
    assert sol.states.shape == (T + 1, B, nx) and sol.actions.shape == (T, B, nu)
    assert sol.K.shape == (T, B, nu, nx) and sol.V.shape == (T + 1, B, nx, nx)
    for b in range(B):
        xs, us, val = cvxpy_lq(
            x0[b].numpy(),
            C[:, b].numpy(),
            c[:, b].numpy(),
            F[:, b].numpy(),
            f[:, b].numpy(),
            CT[b].numpy(),
            cT[b].numpy(),
        )
        np.testing.assert_allclose(sol.actions[:, b].numpy(), us, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(sol.states[:, b].numpy(), xs, atol=1e-5, rtol=1e-5)
        assert abs(sol.cost[b].item() - val) <= 1e-5 * (1 + abs(val))
    # value function: cost-to-go from x0 equals 1/2 x0'V0 x0 + v0'x0 + const; check gradient
    x0r = x0.clone().requires_grad_(True)
    s2 = lqr(x0r, C, c, F, f, C_final=CT, c_final=cT)
    (g,) = torch.autograd.grad(s2.cost.sum(), x0r)
    torch.testing.assert_close(g, (sol.V[0] @ x0.unsqueeze(-1)).squeeze(-1) + sol.v[0])


def test_lqr_gradcheck():
    gen = torch.Generator().manual_seed(3)
    T, B, nx, nu = 3, 2, 2, 1
    n = nx + nu
    L = torch.randn(T, B, n, n, generator=gen, dtype=D)
    C = (L @ L.transpose(-1, -2) + torch.eye(n, dtype=D)).requires_grad_(True)
    c = torch.randn(T, B, n, generator=gen, dtype=D, requires_grad=True)
    F = torch.randn(T, B, nx, n, generator=gen, dtype=D, requires_grad=True)
    x0 = torch.randn(B, nx, generator=gen, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: lqr(*a).actions, (x0, C, c, F))


def test_lqr_bad_input():
    x0 = torch.zeros(2, 2, dtype=D)
    C = torch.eye(3, dtype=D)
    c = torch.zeros(3, dtype=D)
    F = torch.zeros(2, 3, dtype=D)
    with pytest.raises(ValueError, match="F"):
        lqr(x0, C, c, torch.zeros(3, 3, dtype=D), T=4)
    with pytest.raises(ValueError, match="c"):
        lqr(x0, C, torch.zeros(4, dtype=D), F, T=4)
    with pytest.raises(ValueError, match="x_init"):
        lqr(torch.full((2, 2), float("nan"), dtype=D), C, c, F, T=4)
    with pytest.raises(ValueError, match="T"):
        lqr(x0, C, c, F)
    with pytest.raises(ValueError, match="C"):
        lqr(x0, -C, c, F, T=4)
    with pytest.raises(TypeError, match="C"):
        lqr(x0, C.numpy(), c, F, T=4)
