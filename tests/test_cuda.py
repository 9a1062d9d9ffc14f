"""CUDA paths: the same work on the GPU gives the CPU's answers (skipped without CUDA).

CI has no GPU, so these run only where one is present (``pytest tests/test_cuda.py`` on a GPU
machine). Each test runs one capability on ``cuda`` and on the CPU from the same inputs and
compares, or checks that the result stays on the GPU without host copies in the hot loop
(``torch.cuda.set_sync_debug_mode("error")`` raises on any device-to-host synchronisation).
"""

from __future__ import annotations

import math

import pytest
import torch
from diffctl.envs import VecEnv, make

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
D = torch.float64
SYSTEMS = [
    "pendulum",
    "cartpole",
    "acrobot",
    "cartpole-continuous",
    "mountaincar-continuous",
    "car",
    "reacher",
    "linear",
]


@pytest.mark.parametrize("name", SYSTEMS)
def test_pure_step_and_gradients_match_cpu(name: str) -> None:
    env_cpu, env_gpu = make(name, dtype=D), make(name, dtype=D, device=CUDA)
    gen = torch.Generator().manual_seed(0)
    x = env_cpu.initial_state(64, gen)
    low, high = env_cpu.spec.action_bounds()
    if env_cpu.spec.discrete:
        u = torch.randint(0, env_cpu.spec.num_actions, (64,), generator=gen)
    else:
        u = torch.randn(64, env_cpu.spec.act_dim, generator=gen, dtype=D).clamp(low, high)
    out = []
    for env, dev in ((env_cpu, "cpu"), (env_gpu, CUDA)):
        xd = x.to(dev).requires_grad_(True)
        x1, r, term, obs = env.step(xd, u.to(dev))
        (gx,) = torch.autograd.grad(r.sum() + x1.square().sum(), xd)
        assert x1.device.type == torch.device(dev).type
        out.append([t.detach().cpu() for t in (x1, r, term, obs, gx)])
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["pendulum", "cartpole"])
def test_fused_vec_env_on_cuda_equals_eager(name: str) -> None:
    """The fused step (TorchInductor, Triton on CUDA) against the eager step, with auto-resets
    and episode statistics, without a single host synchronisation inside the loop."""
    runs = []
    for fused in (False, True):
        venv = VecEnv(
            make(name, device=CUDA), 256, seed=3, max_steps=25, fused=fused, validate=False
        )
        venv.reset()
        g = torch.Generator(device=CUDA).manual_seed(0)
        steps = []
        for i in range(60):
            if venv.env.spec.discrete:
                u = torch.randint(0, 2, (256,), generator=g, device=CUDA)
            else:
                u = 4 * torch.rand(256, 1, generator=g, device=CUDA) - 2
            if i > 0:  # every step after the first, which compiles the fused kernel
                torch.cuda.set_sync_debug_mode("error")
            try:
                obs, r, term, trunc, info = venv.step(u)
            finally:
                torch.cuda.set_sync_debug_mode("default")
            steps.append((obs, r, term, trunc, info["final_obs"]))
        assert obs.device.type == "cuda"
        runs.append((steps, venv.episode_statistics()))
    (eager, stats_e), (fused, stats_f) = runs
    for x, y in zip(eager, fused):
        for s, t in zip(x, y):
            torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-5)
    assert stats_e["count"] == stats_f["count"] >= 256 * 2
    assert stats_f["mean_return"] == pytest.approx(stats_e["mean_return"], rel=1e-5)


def test_mpc_plan_and_gradients_match_cpu() -> None:
    from diffctl.control import MPC, MPCConfig, RewardCost

    out = []
    th = torch.linspace(-math.pi, math.pi, 16, dtype=D)
    x0 = torch.stack([th, torch.linspace(-1, 1, 16, dtype=D)], -1)
    for dev in ("cpu", CUDA):
        env = make("pendulum", dtype=D, device=dev)
        mpc = MPC(env, RewardCost(env), MPCConfig(horizon=15, max_iter=30))
        x = x0.to(dev).requires_grad_(True)
        res = mpc.plan(x)
        (gx,) = torch.autograd.grad(res.actions.sum(), x)
        assert res.actions.device.type == torch.device(dev).type
        out.append([t.detach().cpu() for t in (res.actions, res.cost, res.converged, gx)])
    (u_c, j_c, ok_c, g_c), (u_g, j_g, ok_g, g_g) = out
    assert bool(ok_c.all()) and bool(ok_g.all())
    torch.testing.assert_close(u_g, u_c, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(j_g, j_c, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(g_g, g_c, rtol=1e-5, atol=1e-5)


def test_lqr_and_convex_free_paths_match_cpu() -> None:
    from diffctl.control import dare, lqr

    gen = torch.Generator().manual_seed(1)
    T, B, nx, nu = 12, 8, 4, 2
    n = nx + nu
    L = torch.randn(n, n, generator=gen, dtype=D)
    C = L @ L.T + torch.eye(n, dtype=D)
    c = torch.randn(T, B, n, generator=gen, dtype=D)
    F = torch.randn(nx, n, generator=gen, dtype=D) * 0.5
    f = torch.randn(nx, generator=gen, dtype=D) * 0.1
    x0 = torch.randn(B, nx, generator=gen, dtype=D)
    a = lqr(x0, C, c, F, f, T=T)
    b = lqr(*(t.to(CUDA) for t in (x0, C, c, F, f)), T=T)
    torch.testing.assert_close(b.actions.cpu(), a.actions, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(b.cost.cpu(), a.cost, rtol=1e-9, atol=1e-9)
    A, Bm = F[:, :nx], F[:, nx:]
    Q, R = torch.eye(nx, dtype=D), torch.eye(nu, dtype=D)
    ka, kb = dare(A, Bm, Q, R), dare(A.to(CUDA), Bm.to(CUDA), Q.to(CUDA), R.to(CUDA))
    torch.testing.assert_close(kb.K.cpu(), ka.K, rtol=1e-8, atol=1e-8)


def test_returns_match_cpu() -> None:
    from diffctl.data import gae, rewards_to_go, td_lambda

    gen = torch.Generator().manual_seed(2)
    r, v, v_next = (torch.randn(50, 32, generator=gen, dtype=D) for _ in range(3))
    term = torch.rand(50, 32, generator=gen) < 0.05
    trunc = torch.rand(50, 32, generator=gen) < 0.05
    args = (r, v, v_next, term, trunc)

    def all_returns(dev: str | torch.device) -> list[torch.Tensor]:
        a = [t.to(dev) for t in args]
        adv, ret = gae(*a, gamma=0.99, lam=0.95)
        lam_ret = td_lambda(*a, gamma=0.99, lam=0.9)
        return [adv, ret, lam_ret, rewards_to_go(a[0], 0.99, dones=a[3] | a[4])]

    for a, b in zip(all_returns("cpu"), all_returns(CUDA)):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algo", ["ppo", "sac", "td3", "ddpg"])
def test_agents_train_on_cuda(algo: str) -> None:
    """A short run trains on the GPU: weights, history and actions live there and are finite."""
    import dataclasses

    from diffctl.agents import ddpg, evaluate, ppo, sac, td3

    mod = {"ppo": ppo, "sac": sac, "td3": td3, "ddpg": ddpg}[algo]
    cfg = mod.default_config("pendulum")
    if algo == "ppo":
        cfg = dataclasses.replace(cfg, total_steps=4 * cfg.num_envs * cfg.num_steps)
    else:  # off-policy: the replay buffer, the lockstep VecEnv step and fused Adam on the GPU
        cfg = dataclasses.replace(cfg, total_steps=600, learning_starts=200)
    result = mod.train("pendulum", cfg, seed=0, device=CUDA)
    params = list(result.agent.parameters())
    assert params and all(p.device.type == "cuda" and bool(p.isfinite().all()) for p in params)
    assert result.history and all(math.isfinite(h["step"]) for h in result.history)
    obs = torch.zeros(5, 3, device=CUDA)
    assert result.agent.act(obs, deterministic=True).device.type == "cuda"
    assert math.isfinite(evaluate(result.agent, make("pendulum", device=CUDA), 2)["mean_return"])


def test_model_fit_on_cuda_matches_cpu_loss() -> None:
    from diffctl.data import rollout
    from diffctl.models import FitConfig, MLPDynamics, fit

    env = make("pendulum")
    gen = torch.Generator().manual_seed(0)
    traj = rollout(env, lambda o: 4 * torch.rand(o.shape[0], 1, generator=gen) - 2, 50, num_envs=16)
    losses = []
    for dev in ("cpu", CUDA):
        torch.manual_seed(0)
        model = MLPDynamics(2, 1, hidden=(64, 64), angle_dims=(0,)).to(dev)
        res = fit(model, traj, FitConfig(epochs=30, seed=0, patience=0))
        assert next(res.model.parameters()).device.type == torch.device(dev).type
        losses.append([h["train_loss"] for h in res.history])
    cpu, gpu = losses
    assert gpu[-1] == pytest.approx(cpu[-1], rel=0.05)  # same data, seed and steps
    assert gpu[-1] < 0.1 * gpu[0]


@pytest.mark.parametrize("compiled", [False, True])
def test_ppo_rollout_and_update_on_cuda_match_cpu_without_host_sync(compiled: bool) -> None:
    """PPO's hot path on the GPU: the rollout (the lockstep env step, frozen normaliser) and the
    minibatch update (loss, backward, gradient-norm clip, fused Adam step; eager or compiled)
    make no host synchronisation, and the update gives the CPU's parameters from the same
    data."""
    import dataclasses

    from diffctl.agents import ppo
    from diffctl.agents.runner import collect_on_policy

    cfg = dataclasses.replace(ppo.default_config("pendulum"), compile=compiled)
    runner = VecEnv(make("pendulum", device=CUDA), cfg.num_envs, seed=0, validate=False)
    agent = ppo.make_agent(runner.spec, cfg, seed=0).to(CUDA)
    gen = torch.Generator(device=CUDA).manual_seed(0)
    runner.reset(seed=0)
    collect_on_policy(runner, agent, 2, gen)  # first-call set-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        traj = collect_on_policy(runner, agent, 300, gen)  # crosses a time limit
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert traj.truncated.any() and traj.extras["log_prob"].device.type == "cuda"

    rows = cfg.minibatch_size
    g = torch.Generator().manual_seed(1)
    data = [
        (
            torch.randn(rows, 3, generator=g),
            torch.randn(rows, 1, generator=g),
            *(torch.randn(rows, generator=g) for _ in range(4)),
        )
        for _ in range(5)
    ]
    params = []
    for dev in ("cpu", CUDA):
        agent = ppo.make_agent(runner.spec, cfg, seed=0).to(dev)
        opt = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5, fused=True)
        update = ppo.make_update(agent, opt, cfg)
        for k, mb in enumerate([tuple(x.to(dev) for x in mb) for mb in data]):
            if dev == CUDA and k == 1:  # (after the first call's set-up, or compile)
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
            try:
                update(*mb)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        params.append(torch.cat([p.detach().reshape(-1).cpu() for p in agent.parameters()]))
    torch.testing.assert_close(params[1], params[0], rtol=1e-4, atol=1e-4)
