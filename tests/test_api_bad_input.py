"""The Python entry points on bad input: envs, learned models, return estimators and ``MPC``
raise ``ValueError``/``TypeError`` naming the argument (wrong shape, dtype, device, NaN/inf,
out-of-range discrete actions, a phantom control), and an empty batch gives an empty result
everywhere. The ``"meta"`` device stands in for a second device on a CPU-only machine.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from diffctl.envs import make

from diffctl.control import MPC, FunctionCost, MPCConfig, QuadCost, Shooting, ShootingConfig
from diffctl.control.dynamics import LinearDynamics
from diffctl.data import discounted_returns, gae, rewards_to_go, td_lambda
from diffctl.models import EnsembleDynamics, GreyBoxModel, LinearModel, MLPDynamics

NAN = float("nan")
TORCH_ENVS = [
    "pendulum",
    "cartpole",
    "cartpole-continuous",
    "acrobot",
    "acrobot-continuous",
    "mountaincar-continuous",
    "linear",
    "car",
    "reacher",
]
DISCRETE = ["cartpole", "acrobot"]


def _raises(exc: type[Exception], arg: str, fn, *args, **kwargs) -> str:
    """``fn(*args)`` raises ``exc`` whose message starts by naming ``arg``."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert re.match(rf"^{re.escape(arg)}\b", msg), f"{arg!r} not named first: {msg!r}"
    assert "\n" not in msg
    return msg


def _good(env):
    x = env.initial_state(3, torch.Generator().manual_seed(0))
    if env.spec.discrete:
        u = torch.zeros(3, dtype=torch.int64)
    else:
        u = torch.zeros(3, env.spec.act_dim)
    return x, u


# ----------------------------------------------------------------------------- envs
@pytest.mark.parametrize("name", TORCH_ENVS)
@pytest.mark.parametrize(
    "case",
    "x_nan x_inf u_nan x_shape u_shape x_int u_dtype x_meta u_meta x_list xn_nan".split(),
)
def test_env_bad_input(name: str, case: str) -> None:
    env = make(name)
    x, u = _good(env)
    x1 = env.dynamics(x, u)
    if case == "u_nan" and env.spec.discrete:
        pytest.skip("discrete actions are integers (see test_discrete_action_out_of_range)")
    if case == "x_nan":
        x[1, 0] = NAN
        msg = _raises(ValueError, "x", env.dynamics, x, u)
        assert "NaN" in msg
        _raises(ValueError, "x", env.reward, x, u, x1)
        _raises(ValueError, "x", env.step, x, u)
    elif case == "x_inf":
        x[0, -1] = math.inf
        _raises(ValueError, "x", env.dynamics, x, u)
    elif case == "u_nan":
        u[2, 0] = NAN
        msg = _raises(ValueError, "u", env.dynamics, x, u)
        assert "NaN" in msg
        _raises(ValueError, "u", env.reward, x, u, x1)
    elif case == "xn_nan":
        x1 = x1.clone()
        x1[0, 0] = NAN
        _raises(ValueError, "x_next", env.reward, x, u, x1)
    elif case == "x_shape":
        msg = _raises(ValueError, "x", env.dynamics, x[:, :-1], u)
        assert str(env.spec.state_dim) in msg
    elif case == "u_shape":
        bad = u[:2]
        _raises(ValueError, "u", env.dynamics, x, bad)
    elif case == "x_int":
        _raises(TypeError, "x", env.dynamics, x.long(), u)
    elif case == "u_dtype":
        bad = u.float() if env.spec.discrete else u.long()
        _raises(TypeError, "u", env.dynamics, x, bad)
    elif case == "x_meta":
        _raises(ValueError, "x", env.dynamics, x.to("meta"), u)
    elif case == "u_meta":
        _raises(ValueError, "u", env.dynamics, x, u.to("meta"))
    elif case == "x_list":
        _raises(TypeError, "x", env.dynamics, x.tolist(), u)


@pytest.mark.parametrize("name", DISCRETE)
@pytest.mark.parametrize("bad", [-1, 2, 3, 100])
def test_discrete_action_out_of_range(name: str, bad: int) -> None:
    env = make(name)
    x, u = _good(env)
    n = env.spec.num_actions
    if 0 <= bad < n:
        pytest.skip(f"{bad} is a valid action of {name}")
    u[1] = bad
    msg = _raises(ValueError, "u", env.dynamics, x, u)
    assert f"[0, {n})" in msg and str(bad) in msg
    _raises(ValueError, "u", env.step, x, u)
    _raises(ValueError, "u", env.reward, x, u, x)
    env.dynamics(x, u.clamp(0, n - 1))  # the valid ones still step


@pytest.mark.parametrize("name", TORCH_ENVS)
def test_env_empty_batch(name: str) -> None:
    env = make(name)
    x, u = _good(env)
    x, u = x[:0], u[:0]
    x1 = env.dynamics(x, u)
    assert x1.shape == (0, env.spec.state_dim)
    assert env.reward(x, u, x1).shape == (0,)
    assert env.observe(x).shape == (0, env.spec.obs_dim)
    assert env.terminated(x).shape == (0,)


def test_env_vmap_and_compile_skip_value_checks() -> None:
    env = make("pendulum")
    x, u = _good(env)
    out = torch.func.vmap(env.dynamics)(x, u)  # no data-dependent check under vmap
    torch.testing.assert_close(out, env.dynamics(x, u))


# ----------------------------------------------------------------------------- models
def _models():
    return {
        "mlp": MLPDynamics(2, 1, hidden=(8,)),
        "ensemble": EnsembleDynamics(2, 1, hidden=(8,), num_members=2, num_elites=2),
        "linear": LinearModel(2, 1),
        "greybox": GreyBoxModel(make("pendulum"), ["m"]),
    }


MODEL_KINDS = ["mlp", "ensemble", "linear", "greybox"]


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize(
    "case", "x_nan u_inf x_shape u_shape batch x_int u_int x_meta u_meta x_none".split()
)
def test_model_bad_input(kind: str, case: str) -> None:
    model = _models()[kind]
    x, u = torch.zeros(4, 2), torch.zeros(4, 1)
    model.predict(x, u)
    model(x, u)
    if case == "x_nan":
        x[0, 1] = NAN
        msg = _raises(ValueError, "x", model.predict, x, u)
        assert "NaN" in msg
    elif case == "u_inf":
        u[3, 0] = -math.inf
        _raises(ValueError, "u", model.predict, x, u)
    elif case in ("x_shape", "u_shape", "batch", "x_int", "u_int", "x_meta", "u_meta", "x_none"):
        arg, exc, bx, bu = {
            "x_shape": ("x", ValueError, torch.zeros(4, 3), u),
            "u_shape": ("u", ValueError, x, torch.zeros(4, 2)),
            "batch": ("u", ValueError, x, torch.zeros(3, 1)),
            "x_int": ("x", TypeError, x.long(), u),
            "u_int": ("u", TypeError, x, u.long()),
            "x_meta": ("x", ValueError, x.to("meta"), u),
            "u_meta": ("u", ValueError, x, u.to("meta")),
            "x_none": ("x", TypeError, None, u),
        }[case]
        _raises(exc, arg, model.predict, bx, bu)
        _raises(exc, arg, model, bx, bu)  # the forward call checks what needs no host sync


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_model_empty_batch(kind: str) -> None:
    model = _models()[kind]
    x, u = torch.zeros(0, 2), torch.zeros(0, 1)
    assert model.predict(x, u).shape == (0, 2)
    assert model(x, u).shape == (0, 2)


# ----------------------------------------------------------------------------- returns
def _value_args(T: int = 5, B: int = 3):
    g = torch.Generator().manual_seed(0)
    r, v, nv = (torch.randn(T, B, generator=g) for _ in range(3))
    term = torch.zeros(T, B, dtype=torch.bool)
    trunc = torch.zeros(T, B, dtype=torch.bool)
    return [r, v, nv, term, trunc]


ESTIMATORS = ["gae", "td_lambda"]


def _est(name: str):
    return {"gae": gae, "td_lambda": td_lambda}[name]


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize(
    "case",
    "r_nan v_nan nv_inf r_shape v_shape term_dtype r_int nv_meta gamma lam r_none".split(),
)
def test_value_estimator_bad_input(name: str, case: str) -> None:
    fn = _est(name)
    a = _value_args()
    idx, arg, exc = {
        "r_nan": (0, "rewards", ValueError),
        "v_nan": (1, "values", ValueError),
        "nv_inf": (2, "next_values", ValueError),
        "r_shape": (0, "values", ValueError),  # the others are compared with rewards
        "v_shape": (1, "values", ValueError),
        "term_dtype": (3, "terminated", TypeError),
        "r_int": (0, "rewards", TypeError),
        "nv_meta": (2, "next_values", ValueError),
        "gamma": (None, "gamma", ValueError),
        "lam": (None, "lam", ValueError),
        "r_none": (0, "rewards", TypeError),
    }[case]
    kw = {"gamma": 0.99, "lam": 0.95}
    if case in ("r_nan", "v_nan"):
        a[idx][2, 1] = NAN
    elif case == "nv_inf":
        a[idx][4, 0] = math.inf
    elif case == "r_shape":
        a[0] = a[0][:, :2]
    elif case == "v_shape":
        a[1] = a[1][:4]
    elif case == "term_dtype":
        a[3] = a[3].float()
    elif case == "r_int":
        a[0] = a[0].long()
    elif case == "nv_meta":
        a[2] = a[2].to("meta")
    elif case == "gamma":
        kw["gamma"] = 1.5
    elif case == "lam":
        kw["lam"] = -0.1
    elif case == "r_none":
        a[0] = None
    _raises(exc, arg, fn, *a, **kw)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_value_estimator_nan_opt_out_and_terminal(name: str) -> None:
    fn = _est(name)
    a = _value_args()
    a[3][2, 1] = True
    a[2][2, 1] = NAN  # the value after a terminal step is never used
    out = fn(*a, gamma=0.9, lam=0.8)
    out = out[0] if isinstance(out, tuple) else out
    assert torch.isfinite(out).all()
    a[0][0, 0] = NAN  # training loops opt out of the (host-syncing) check: NaN propagates
    out = fn(*a, gamma=0.9, lam=0.8, check_finite=False)
    out = out[0] if isinstance(out, tuple) else out
    assert out.isnan().any()


@pytest.mark.parametrize("fn", [discounted_returns, rewards_to_go])
@pytest.mark.parametrize("case", ["nan", "inf", "int", "scalar", "meta_dones", "gamma"])
def test_returns_bad_input(fn, case: str) -> None:
    r = torch.randn(4, 2)
    if case in ("nan", "inf"):
        r[1, 1] = NAN if case == "nan" else math.inf
        msg = _raises(ValueError, "rewards", fn, r, 0.9)
        assert "NaN" in msg
        assert fn(r, 0.9, check_finite=False).isfinite().logical_not().any()
    elif case == "int":
        _raises(TypeError, "rewards", fn, r.long(), 0.9)
    elif case == "scalar":
        _raises(ValueError, "rewards", fn, torch.tensor(1.0), 0.9)
    elif case == "meta_dones":
        if fn is discounted_returns:
            pytest.skip("discounted_returns takes no dones")
        _raises(ValueError, "dones", fn, r, 0.9, torch.zeros(4, 2, dtype=torch.bool, device="meta"))
    elif case == "gamma":
        _raises(TypeError, "gamma", fn, r, "0.9")


def test_returns_empty_batch() -> None:
    a = [t[:, :0] for t in _value_args()]
    assert gae(*a, gamma=0.9, lam=0.9)[0].shape == (5, 0)
    assert td_lambda(*a, gamma=0.9, lam=0.9).shape == (5, 0)
    assert discounted_returns(a[0], 0.9).shape == (0,)
    assert rewards_to_go(a[0], 0.9).shape == (5, 0)


# ----------------------------------------------------------------------------- MPC
def _cost(x, u):
    return (x**2).sum(-1) + (u**2).sum(-1)


CFG = MPCConfig(horizon=3, max_iter=2)


@pytest.mark.parametrize(
    "dyn",
    ["env", "model", "linear"],
)
def test_mpc_phantom_control(dyn: str) -> None:
    f = {
        "env": make("pendulum"),
        "model": MLPDynamics(2, 1, hidden=(8,)),
        "linear": LinearDynamics(torch.randn(2, 3)),
    }[dyn]
    msg = _raises(ValueError, "nu", MPC, f, _cost, CFG, nu=2)
    assert "expected 1" in msg and "got 2" in msg
    mpc = MPC(f, _cost, CFG)  # nu inferred
    assert mpc.plan(torch.zeros(2, 2)).actions.shape == (3, 2, 1)
    MPC(f, _cost, CFG, nu=1)


def test_mpc_bad_input() -> None:
    env = make("pendulum")
    _raises(ValueError, "dynamics", MPC, make("cartpole"), _cost, CFG)
    _raises(ValueError, "nu", MPC, lambda x, u: x, _cost, CFG, nu=0)
    _raises(ValueError, "nu", MPC(lambda x, u: x + u, _cost, CFG).plan, torch.zeros(2, 2))
    mpc = MPC(env, _cost, CFG)
    _raises(ValueError, "x0", mpc.plan, torch.zeros(2, 3))
    _raises(ValueError, "x0", mpc.plan, torch.tensor([[NAN, 0.0]]))
    _raises(TypeError, "x0", mpc.plan, torch.zeros(2, 2, dtype=torch.int64))
    _raises(ValueError, "x0", mpc.plan, torch.zeros(2, 2, device="meta"))
    _raises(
        ValueError, "x0", MPC(MLPDynamics(2, 1, hidden=(4,)), _cost, CFG).plan, torch.zeros(1, 3)
    )
    _raises(ValueError, "warm_start", mpc.plan, torch.zeros(2, 2), torch.zeros(3, 2, 2))
    _raises(ValueError, "warm_start", mpc.plan, torch.zeros(2, 2), torch.full((3, 2, 1), NAN))
    _raises(TypeError, "config", MPC, env, _cost, {"horizon": 3})


def test_mpc_empty_batch() -> None:
    res = MPC(make("pendulum"), _cost, CFG).plan(torch.zeros(0, 2))
    assert res.actions.shape == (3, 0, 1)
    q = QuadCost(torch.eye(3), torch.zeros(3))
    res = MPC(LinearDynamics(torch.randn(2, 3)), q, CFG).plan(torch.zeros(0, 2))
    assert res.actions.shape == (3, 0, 1)


def test_readme_protocol_snippet_infers_nu() -> None:
    """``MPC(f, cost, MPCConfig(...))`` as the README writes it: nu from the model."""
    env = make("pendulum")
    f = EnsembleDynamics(2, 1, hidden=(8,), num_members=2, num_elites=2, angle_dims=(0,))
    cost = FunctionCost(lambda x, u: -env.reward(x, u, f(x, u)))
    mpc = MPC(f, cost, MPCConfig(horizon=3, max_iter=2, u_lower=-2.0, u_upper=2.0))
    assert mpc.plan(torch.zeros(2, 2)).actions.shape == (3, 2, 1)


# ----------------------------------------------------------------------------- Shooting
@pytest.mark.parametrize("dyn", ["env", "model"])
def test_shooting_bad_input_and_empty_batch(dyn: str) -> None:
    env = make("pendulum")
    f = env if dyn == "env" else MLPDynamics(2, 1, hidden=(4,))
    lo, hi = env.spec.action_bounds()
    cfg = ShootingConfig(horizon=3, iterations=2)
    p = Shooting(f, reward=env.reward, action_low=lo, action_high=hi, config=cfg)
    assert p.plan(torch.zeros(0, 2)).actions.shape == (3, 0, 1)
    _raises(ValueError, "x0", p.plan, torch.zeros(2, 3))
    _raises(ValueError, "x0", p.plan, torch.zeros(2, 2, device="meta"))
    _raises(ValueError, "x0", p.plan, torch.tensor([[NAN, 0.0]]))
    _raises(TypeError, "x0", p.plan, torch.zeros(2, 2, dtype=torch.int64))
