"""System-specific checks against analytic answers (the systems without a gymnasium reference
and the options gymnasium does not have)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffctl.envs import VecEnv, make
from diffctl.envs.acrobot import _wrap
from torch.func import grad, hessian, jacfwd

F64 = torch.float64


# ---------------------------------------------------------------- cart-pole
def test_continuous_cartpole_has_the_discrete_physics() -> None:
    disc = make("cartpole", dtype=F64, masspole=0.2)
    cont = make("cartpole-continuous", dtype=F64, masspole=0.2)
    x = disc.initial_state(8, torch.Generator().manual_seed(0))
    for a in (0, 1):
        u = torch.full((8, 1), 2.0 * a - 1.0, dtype=F64)
        torch.testing.assert_close(cont.dynamics(x, u), disc.dynamics(x, torch.full((8,), a)))
    # clipped to [-1, 1], scaled by force_mag
    big = torch.full((8, 1), 5.0, dtype=F64)
    torch.testing.assert_close(
        cont.dynamics(x, big), disc.dynamics(x, torch.ones(8, dtype=torch.long))
    )
    half = make("cartpole-continuous", dtype=F64, masspole=0.2, force_mag=5.0)
    torch.testing.assert_close(half.dynamics(x, big), cont.dynamics(x, big / 10))
    assert torch.equal(cont.terminated(x), disc.terminated(x))
    assert (cont.reward(x, u, x) == 1).all()


def test_swing_up_start_reward_and_no_termination() -> None:
    env = make("cartpole-continuous", swing_up=True, dtype=F64)
    assert env.spec.obs_dim == 5 and env.spec.max_steps == 500
    x = env.initial_state(1000, torch.Generator().manual_seed(0))
    assert (x[:, 2] - math.pi).abs().max() <= 0.05 and x[:, [0, 1, 3]].abs().max() <= 0.05
    obs = env.observe(x)
    torch.testing.assert_close(obs[:, 2], torch.cos(x[:, 2]))
    torch.testing.assert_close(obs[:, 3], torch.sin(x[:, 2]))
    far = torch.tensor([[5.0, 3.0, 1.0, 9.0], [-5.0, 0.0, -4.0, 0.0]], dtype=F64)
    assert not env.terminated(far).any()
    zero_u = torch.zeros(1, 1, dtype=F64)
    up = torch.zeros(1, 4, dtype=F64)
    assert float(env.reward(up, zero_u, up)) == pytest.approx(0.0, abs=1e-9)  # the maximum
    down = torch.tensor([[0.0, 0.0, math.pi, 0.0]], dtype=F64)
    assert float(env.reward(down, zero_u, down)) == pytest.approx(-2.0, abs=1e-9)

    # the soft track limit: negligible inside, a slope of ~10 per metre outside
    def r_at(pos: float) -> float:
        s = torch.tensor([[pos, 0.0, 0.0, 0.0]], dtype=F64)
        return float(env.reward(s, zero_u, s))

    assert r_at(2.0) == pytest.approx(-0.1 * 4.0, abs=1e-3)
    slope = (r_at(3.0) - r_at(3.1)) / 0.1 - 0.1 * (3.1**2 - 3.0**2) / 0.1
    assert slope == pytest.approx(10.0, rel=1e-3)
    # smooth near the goal: the gradient w.r.t. the action is continuous through u = 0
    g = grad(lambda u: env.reward(up, u, up).sum())
    assert float(g(torch.tensor([[1e-4]], dtype=F64))) == pytest.approx(-2e-6)


def test_swing_up_is_reachable_with_the_force_limit() -> None:
    """An energy-pumping controller (Astrom & Furuta, 2000) with the [-1, 1] force limit brings
    the pole from hanging to within 0.3 rad of upright inside the 500-step episode."""
    env = make("cartpole-continuous", swing_up=True, dtype=F64)
    p = env.params
    mp, length, g = float(p["masspole"]), float(p["length"]), float(p["gravity"])
    x = env.initial_state(1, torch.Generator().manual_seed(0))
    best = math.pi
    for _ in range(env.spec.max_steps):
        th, thd = x[0, 2], x[0, 3]
        # pendulum energy relative to upright rest, theta = 0 upright
        energy = 0.5 * (4.0 / 3.0) * mp * length**2 * thd**2 + mp * g * length * (torch.cos(th) - 1)
        u = torch.clamp(5.0 * energy * thd * torch.cos(th) - 0.5 * x[0, 0], -1.0, 1.0)
        x = env.dynamics(x, u.reshape(1, 1))
        best = min(best, abs(math.remainder(float(x[0, 2]), 2 * math.pi)))
    assert best < 0.3


# ---------------------------------------------------------------- acrobot
def test_acrobot_wrap_matches_gymnasium_wrap() -> None:
    vals = torch.tensor([0.1, math.pi, -math.pi, 3.5, -3.5, 7.0, -20.0, 13.0], dtype=F64)
    out = _wrap(vals)

    def gym_wrap(x: float) -> float:
        while x > math.pi:
            x -= 2 * math.pi
        while x < -math.pi:
            x += 2 * math.pi
        return x

    assert out[0] == vals[0] and out[1] == math.pi and out[2] == -math.pi  # bit-exact in range
    np.testing.assert_allclose(out.numpy(), [gym_wrap(float(v)) for v in vals], atol=1e-12)


def test_continuous_acrobot_has_the_discrete_physics() -> None:
    disc = make("acrobot", dtype=F64, m2=1.5)
    cont = make("acrobot-continuous", dtype=F64, m2=1.5)
    x = torch.tensor([[0.3, -0.2, 1.0, -2.0], [2.0, 1.0, 0.5, 0.0]], dtype=F64)
    for a in (0, 1, 2):
        u = torch.full((2, 1), a - 1.0, dtype=F64)
        torch.testing.assert_close(cont.dynamics(x, u), disc.dynamics(x, torch.full((2,), a)))
    torch.testing.assert_close(
        cont.dynamics(x, torch.full((2, 1), 7.0, dtype=F64)),
        cont.dynamics(x, torch.ones(2, 1, dtype=F64)),
    )


# ---------------------------------------------------------------- mountain car
def test_mountaincar_left_wall_stops_the_car() -> None:
    env = make("mountaincar-continuous", dtype=F64)
    x1 = env.dynamics(torch.tensor([[-1.19, -0.05]], dtype=F64), torch.tensor([[-1.0]], dtype=F64))
    assert x1.tolist() == [[-1.2, 0.0]]
    x = env.initial_state(500, torch.Generator().manual_seed(0))
    assert x[:, 0].min() >= -0.6 and x[:, 0].max() <= -0.4 and (x[:, 1] == 0).all()


# ---------------------------------------------------------------- linear
def test_linear_default_is_the_zero_order_hold_double_integrator() -> None:
    env = make("linear", dtype=F64)
    dt = env.spec.dt
    x = torch.tensor([[0.3, -0.2]], dtype=F64)
    a = torch.tensor([[0.7]], dtype=F64)
    # exact solution of p'' = a over dt
    want = [[0.3 - 0.2 * dt + 0.5 * 0.7 * dt**2, -0.2 + 0.7 * dt]]
    torch.testing.assert_close(env.dynamics(x, a), torch.tensor(want, dtype=F64))
    r = env.reward(x, a, x)
    assert float(r) == pytest.approx(-(0.3**2 + 0.2**2 + 0.1 * 0.7**2))


def test_linear_lqr_cost_equals_the_riccati_value() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    A = [[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.1, 0.0, 1.0]]
    B = [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1]]
    Q = [[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]]
    R = [[1.0, 0.2], [0.2, 0.5]]
    env = make("linear", A=A, B=B, Q=Q, R=R, dtype=F64)
    An, Bn, Qn, Rn = (np.array(m) for m in (A, B, Q, R))
    P = scipy_linalg.solve_discrete_are(An, Bn, Qn, Rn)
    K = torch.tensor(np.linalg.solve(Rn + Bn.T @ P @ Bn, Bn.T @ P @ An), dtype=F64)
    x0 = torch.tensor([[1.0, -0.5, 0.3], [0.0, 2.0, -1.0]], dtype=F64)
    x, ret = x0, torch.zeros(2, dtype=F64)
    for _ in range(1500):
        u = -x @ K.T
        x1 = env.dynamics(x, u)
        ret = ret + env.reward(x, u, x1)
        x = x1
    value = ((x0 @ torch.tensor(P, dtype=F64)) * x0).sum(-1)
    torch.testing.assert_close(-ret, value, rtol=1e-6, atol=1e-8)


def test_linear_clips_given_bounds_only() -> None:
    free = make("linear", dtype=F64, action_low=-math.inf, action_high=math.inf)
    boxed = make("linear", dtype=F64, action_low=-1.0, action_high=1.0)
    x = torch.zeros(1, 2, dtype=F64)
    u = torch.tensor([[5.0]], dtype=F64)
    assert float(free.dynamics(x, u)[0, 1]) == pytest.approx(0.5)
    assert float(boxed.dynamics(x, u)[0, 1]) == pytest.approx(0.1)
    assert float(boxed.reward(x, u, x)) == pytest.approx(-0.1)


# ---------------------------------------------------------------- car
def test_car_kinematics_and_goal_frame() -> None:
    env = make("car", dtype=F64, wheelbase=2.0, goal=[3.0, 4.0, math.pi / 2])
    x = torch.tensor([[1.0, 2.0, 0.3, 4.0]], dtype=F64)
    u = torch.tensor([[1.0, 0.2]], dtype=F64)
    dt = env.spec.dt
    want = [
        1.0 + dt * 4.0 * math.cos(0.3),
        2.0 + dt * 4.0 * math.sin(0.3),
        0.3 + dt * 4.0 * math.tan(0.2) / 2.0,
        4.0 + dt * 1.0,
    ]
    torch.testing.assert_close(env.dynamics(x, u)[0], torch.tensor(want, dtype=F64))
    # clipped steering and acceleration
    torch.testing.assert_close(
        env.dynamics(x, torch.tensor([[9.0, 9.0]], dtype=F64)),
        env.dynamics(x, torch.tensor([[2.0, 0.5]], dtype=F64)),
    )
    at_goal = torch.tensor([[3.0, 4.0, math.pi / 2, 0.0]], dtype=F64)
    zero = torch.zeros(1, 2, dtype=F64)
    assert float(env.reward(at_goal, zero, at_goal)) == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(env.observe(at_goal), torch.tensor([[0.0, 0, 1, 0, 0]], dtype=F64))
    # one metre ahead of the goal along its heading is +1 on the goal frame's x axis
    ahead = torch.tensor([[3.0, 5.0, math.pi / 2, 0.0]], dtype=F64)
    torch.testing.assert_close(env.observe(ahead)[0, :2], torch.tensor([1.0, 0.0], dtype=F64))
    assert float(env.reward(ahead, zero, ahead)) == pytest.approx(-1.0)


# ---------------------------------------------------------------- reacher
def test_reacher_matches_the_euler_lagrange_equations() -> None:
    """Accelerations from the dynamics equal those of the Lagrangian of two uniform rods,
    derived here by automatic differentiation of the kinetic energy."""
    env = make("reacher", dtype=F64, m1=1.3, m2=0.7, l1=0.9, l2=1.2, damping=0.2)
    p = {k: float(v) for k, v in env.params.items() if v.dim() == 0}

    def kinetic(q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        l1, l2, m1, m2 = p["l1"], p["l2"], p["m1"], p["m2"]
        w1, w2 = qd[0], qd[0] + qd[1]
        e1 = torch.stack([-torch.sin(q[0]), torch.cos(q[0])])
        e2 = torch.stack([-torch.sin(q[0] + q[1]), torch.cos(q[0] + q[1])])
        v1 = l1 / 2 * w1 * e1
        v2 = l1 * w1 * e1 + l2 / 2 * w2 * e2
        inertia1, inertia2 = m1 * l1**2 / 12, m2 * l2**2 / 12
        return 0.5 * (m1 * v1 @ v1 + inertia1 * w1**2 + m2 * v2 @ v2 + inertia2 * w2**2)

    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.rand(4, generator=gen, dtype=F64) * 4 - 2
        tau = torch.rand(2, generator=gen, dtype=F64) * 2 - 1
        q, qd = x[:2], x[2:]
        M = hessian(kinetic, argnums=1)(q, qd)
        dT_dq = grad(kinetic, argnums=0)(q, qd)
        mixed = jacfwd(grad(kinetic, argnums=1), argnums=0)(q, qd)  # d/dq (dT/dqd)
        qdd = torch.linalg.solve(M, tau - p["damping"] * qd + dT_dq - mixed @ qd)
        x1 = env.dynamics(x, tau)
        torch.testing.assert_close((x1[2:] - qd) / env.spec.dt, qdd, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(x1[:2], q + env.spec.dt * x1[2:])  # semi-implicit Euler


def test_reacher_tip_reward_and_observation() -> None:
    env = make("reacher", dtype=F64, target=[0.0, 2.0])
    up = torch.tensor([[math.pi / 2, 0.0, 0.0, 0.0]], dtype=F64)
    zero = torch.zeros(1, 2, dtype=F64)
    torch.testing.assert_close(env.tip(up[:, :2]), torch.tensor([[0.0, 2.0]], dtype=F64))
    assert float(env.reward(up, zero, up)) == pytest.approx(0.0, abs=1e-12)
    obs = env.observe(up)
    assert obs.shape == (1, 8)
    torch.testing.assert_close(obs[0, 6:], torch.zeros(2, dtype=F64), atol=1e-12, rtol=0)
    u = torch.tensor([[3.0, -1.0]], dtype=F64)  # clipped to 2 in the control cost
    assert float(env.reward(up, u, up)) == pytest.approx(-0.01 * (4.0 + 1.0))


# ---------------------------------------------------------------- all systems
@pytest.mark.parametrize(
    "name",
    [
        "cartpole",
        "cartpole-continuous",
        "acrobot",
        "mountaincar-continuous",
        "linear",
        "car",
        "reacher",
    ],
)
def test_runs_in_vecenv(name: str) -> None:
    env = make(name)
    venv = VecEnv(env, 16, seed=0)
    venv.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(env.spec.max_steps + 1):
        if env.spec.discrete:
            u = torch.randint(env.spec.num_actions, (16,), generator=g)
        else:
            low, high = env.spec.action_bounds()
            low, high = low.clamp(min=-3.0), high.clamp(max=3.0)
            u = low + (high - low) * torch.rand(16, env.spec.act_dim, generator=g)
        obs, r, term, trunc, info = venv.step(u)
        assert torch.isfinite(obs).all() and torch.isfinite(r).all()
    assert venv.episode_statistics()["count"] >= 16  # every env finished an episode
