"""Bad input to MPC / MPCConfig / QuadCost gives clear errors naming the argument."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import make

from diffctl.control import MPC, LinearDynamics, MPCConfig, QuadCost, RewardCost

D = torch.float64


def _lq():
    F = torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1]], dtype=D)
    return LinearDynamics(F), QuadCost(torch.eye(3, dtype=D))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(horizon=0), "horizon"),
        (dict(max_iter=-1), "max_iter"),
        (dict(u_lower=1.0, u_upper=-1.0), "u_lower"),
        (dict(u_lower=(0.0, 2.0), u_upper=(1.0, 1.0)), "u_lower"),
        (dict(state_lower=(1.0,), state_upper=(0.0,)), "state_lower"),
        (dict(hessian="newton"), "hessian"),
        (dict(linesearch_decay=1.5), "linesearch_decay"),
        (dict(u_tol=float("nan")), "u_tol"),
        (dict(u_lower=float("nan")), "u_lower"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MPCConfig(**kwargs)


def test_tensor_bounds_lower_above_upper():
    dyn, cost = _lq()
    with pytest.raises(ValueError, match="u_lower"):
        MPC(
            dyn,
            cost,
            MPCConfig(horizon=3),
            u_lower=torch.ones(1, dtype=D),
            u_upper=torch.zeros(1, dtype=D),
        )


def test_mismatched_dimensions():
    dyn, cost = _lq()
    mpc = MPC(dyn, cost, MPCConfig(horizon=3))
    with pytest.raises(ValueError, match="x0"):
        mpc.plan(torch.zeros(2, 2, 1, dtype=D))
    with pytest.raises(ValueError, match="F"):
        mpc.plan(torch.zeros(2, 3, dtype=D))  # nx = 3 but F has 2 rows
    with pytest.raises(ValueError, match="warm_start"):
        mpc.plan(torch.zeros(2, 2, dtype=D), warm_start=torch.zeros(4, 2, 1, dtype=D))
    with pytest.raises(ValueError, match="C"):
        MPC(dyn, QuadCost(torch.eye(4, dtype=D)), MPCConfig(horizon=3), nu=1).plan(
            torch.zeros(1, 2, dtype=D)
        )
    env = make("pendulum", dtype=D)
    with pytest.raises(ValueError, match="x0"):
        MPC(env, RewardCost(env), MPCConfig(horizon=3)).plan(torch.zeros(1, 3, dtype=D))


def test_non_psd_cost_rejected():
    C = torch.diag(torch.tensor([1.0, -0.5, 1.0], dtype=D))
    with pytest.raises(ValueError, match="C: .*positive semidefinite"):
        QuadCost(C)
    with pytest.raises(ValueError, match="C_final"):
        QuadCost(torch.eye(3, dtype=D), C_final=-torch.eye(2, dtype=D))


def test_nan_inputs_rejected():
    dyn, cost = _lq()
    mpc = MPC(dyn, cost, MPCConfig(horizon=3))
    with pytest.raises(ValueError, match="x0"):
        mpc.plan(torch.tensor([[float("nan"), 0.0]], dtype=D))
    with pytest.raises(ValueError, match="warm_start"):
        mpc.plan(
            torch.zeros(1, 2, dtype=D), warm_start=torch.full((3, 1, 1), float("nan"), dtype=D)
        )
    C = torch.eye(3, dtype=D)
    C[0, 1] = float("nan")
    with pytest.raises(ValueError, match="C"):
        QuadCost(C)
    with pytest.raises(ValueError, match="c"):
        QuadCost(torch.eye(3, dtype=D), torch.tensor([0.0, float("inf"), 0.0], dtype=D))
    with pytest.raises(ValueError, match="F"):
        LinearDynamics(torch.full((2, 3), float("nan"), dtype=D))


def test_wrong_types():
    dyn, cost = _lq()
    with pytest.raises(TypeError, match="config"):
        MPC(dyn, cost, config={"horizon": 3})
    with pytest.raises(TypeError, match="cost"):
        MPC(dyn, 3.0)
    with pytest.raises(TypeError, match="dynamics"):
        MPC(None, cost)
    with pytest.raises(TypeError, match="x0"):
        MPC(dyn, cost).plan([[0.0, 0.0]])
    with pytest.raises(ValueError, match="hessian"):
        MPC(dyn, lambda x, u: (x**2).sum(-1), MPCConfig(hessian="gauss-newton"))
