"""MPC's implicit backward through Brax physics (the bridge has no ``is_grads_batched``)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("brax")

from diffctl.envs import make  # noqa: E402

from diffctl.control import MPC, MPCConfig, QuadCost  # noqa: E402

pytestmark = pytest.mark.brax


def test_implicit_gradient_through_brax_matches_finite_differences():
    torch.set_num_threads(1)
    env = make("brax:inverted_pendulum", verbose=False)
    nx, h = env.spec.state_dim, 1e-2
    # row 0 is differentiated; rows 1.. are +-h perturbations of its start state (one batch, so
    # every jitted function compiles for one set of shapes)
    base = torch.tensor([0.05, 0.08, -0.1, 0.2])
    steps = h * torch.eye(nx)
    x0 = torch.cat([base[None], base + steps, base - steps]).requires_grad_(True)
    C = torch.diag(torch.tensor([1.0, 10.0, 0.1, 0.1, 0.1]))
    # bounds wide enough to stay inactive (the finite differences see a smooth problem); one
    # step size, so the line search rolls out the same batch shape as the plan (fewer compiles)
    cfg = MPCConfig(
        horizon=3, max_iter=30, u_tol=1e-6, u_lower=-10.0, u_upper=10.0, max_linesearch_iter=1
    )
    res = MPC(env, QuadCost(C), cfg).plan(x0)
    assert bool(res.converged.all())
    w = torch.tensor([1.0, -0.5, 0.3])[:, None]
    (grad,) = torch.autograd.grad((res.actions[:, 0] * w).sum(), x0)
    obj = (res.actions.detach()[..., 0] * w).sum(0)
    fd = (obj[1 : nx + 1] - obj[nx + 1 :]) / (2 * h)
    assert torch.isfinite(grad[0]).all()
    torch.testing.assert_close(grad[0], fd, atol=2e-3, rtol=2e-2)
    assert grad[1:].abs().max() == 0  # rows are independent
