"""MPC's implicit backward through dynamics that torch cannot vmap (``is_grads_batched``
fails): a Function computing in numpy, built like the Brax bridge (a backward that is itself
such a Function, so second derivatives exist but have no batching rule)."""

from __future__ import annotations

import numpy as np
import torch

from diffctl.control import MPC, MPCConfig, QuadCost

torch.set_num_threads(1)
D = torch.float64
DT = 0.1


def _f(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Pendulum-like ``[th, w]``: ``th' = th + dt w``, ``w' = w + dt (sin th + u)``."""
    th, w = x.unbind(-1)
    return torch.stack([th + DT * w, w + DT * (torch.sin(th) + u[..., 0])], -1)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()  # no batching rule for detach under vmap


class _HVP(torch.autograd.Function):
    """``(x, u, lam) -> lam' df/d(x, u)`` in numpy; its own backward is analytic too."""

    @staticmethod
    def forward(x, u, lam):  # type: ignore[override]
        th, ln = _np(x)[:, 0], _np(lam)
        gx = np.stack([ln[:, 1] * DT * np.cos(th) + ln[:, 0], ln[:, 0] * DT + ln[:, 1]], -1)
        return torch.from_numpy(gx), torch.from_numpy(ln[:, 1:] * DT)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, ggx, ggu):  # type: ignore[override]
        x, u, lam = ctx.saved_tensors
        th, ln, a = _np(x)[:, 0], _np(lam), _np(ggx)
        dx = np.stack([-ln[:, 1] * DT * np.sin(th) * a[:, 0], np.zeros_like(th)], -1)
        dlam = np.stack(
            [a[:, 0] + DT * a[:, 1], DT * np.cos(th) * a[:, 0] + a[:, 1] + DT * _np(ggu)[:, 0]], -1
        )
        return torch.from_numpy(dx), torch.zeros_like(u), torch.from_numpy(dlam)


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(x, u):  # type: ignore[override]
        return _f(torch.from_numpy(_np(x)), torch.from_numpy(_np(u)))

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, u = ctx.saved_tensors
        return _HVP.apply(x, u, g)


def _plan(dyn, x0):
    C = torch.diag(torch.tensor([1.0, 0.1, 0.05], dtype=D))
    cfg = MPCConfig(horizon=8, u_lower=-0.6, u_upper=0.6, u_tol=1e-12, max_iter=100)
    return MPC(dyn, QuadCost(C, torch.tensor([-1.0, 0.0, 0.0], dtype=D)), cfg, nu=1).plan(x0)


def test_implicit_gradient_without_batched_grads_equals_pure_torch():
    x0 = torch.tensor([[0.3, -0.2], [-0.5, 0.4]], dtype=D)
    grads = []
    for dyn in (_Step.apply, _f):
        x = x0.clone().requires_grad_(True)
        res = _plan(dyn, x)
        assert bool(res.converged.all())
        w = torch.linspace(-1, 1, res.actions.numel(), dtype=D).view_as(res.actions)
        grads.append(torch.autograd.grad((res.actions * w).sum() + res.cost.sum(), x)[0])
    active = (res.actions.abs() == 0.6).any()
    assert active  # the free-control restriction is exercised too
    torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=1e-9)
