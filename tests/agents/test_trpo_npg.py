"""TRPO and NPG: the natural-gradient maths against explicit oracles (float64, small networks),
the trust-region step, the CLI, bit-exact resume and (slow) the tuned presets learning."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from diffctl.envs import make
from torch import nn
from torch.distributions import Categorical, Normal, kl_divergence
from torch.nn.utils import parameters_to_vector

from diffctl.agents import evaluate, load, npg, trpo
from diffctl.agents import train as train_by_name
from diffctl.agents.natural_gradient import (
    conjugate_gradient,
    fisher_vector_product,
    line_search,
    policy_distribution,
    set_flat_params,
    trust_region_step,
)
from diffctl.agents.natural_gradient import (
    kl_divergence as policy_kl,
)
from diffctl.agents.networks import stochastic_policy
from diffctl.cli import main

F64 = torch.float64

# tiny runs (a few iterations) of each algorithm, for the CLI and resume tests
TINY = {
    "trpo": trpo.TRPOConfig(total_steps=256, num_envs=4, num_steps=16, vf_minibatches=2),
    "npg": npg.NPGConfig(total_steps=256, num_envs=4, num_steps=16, vf_minibatches=2),
}


def _actor(env: str, seed: int = 0) -> nn.Module:
    """A small float64 policy with weights large enough that it is far from uniform."""
    torch.manual_seed(seed)
    actor = stochastic_policy(make(env).spec, (5,), "tanh", log_std_init=-0.3).double()
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return actor


def _batch(actor: nn.Module, env: str, rows: int = 48, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    spec = make(env).spec
    obs = torch.randn(rows, spec.obs_dim, generator=g, dtype=F64)
    with torch.no_grad():
        actions, _ = actor.sample(obs, g)
    advantages = torch.randn(rows, generator=g, dtype=F64)
    return obs, actions, advantages


class _MeanKL(nn.Module):
    """``mean KL(pi_old || pi_theta)`` as a module's forward, for ``functional_call``."""

    def __init__(self, actor: nn.Module, old: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.actor, self.old = actor, old

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return policy_kl(self.actor, obs, self.old).mean()


def _unflatten(actor: nn.Module, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    names = [f"actor.{n}" for n, _ in actor.named_parameters()]
    sizes = [p.numel() for p in actor.parameters()]
    shapes = [p.shape for p in actor.parameters()]
    return {n: t.view(s) for n, t, s in zip(names, theta.split(sizes), shapes)}


def _explicit_fisher(actor: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """``F [P, P]``: the Hessian of the mean KL at the old parameters (built whole)."""
    old = tuple(t.detach() for t in policy_distribution(actor, obs))
    module = _MeanKL(actor, old)
    theta0 = parameters_to_vector(actor.parameters()).detach()

    def kl_of(theta: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(module, _unflatten(actor, theta), (obs,))

    return torch.autograd.functional.hessian(kl_of, theta0)


def _surrogate_grad(actor, obs, actions, advantages) -> torch.Tensor:
    logp, _ = actor.log_prob_entropy(obs, actions)
    surrogate = ((logp - logp.detach()).exp() * advantages).mean()
    grads = torch.autograd.grad(surrogate, list(actor.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


# --------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("env", ["pendulum", "cartpole"])
def test_fisher_vector_product_is_the_kl_hessian_times_v(env):
    actor = _actor(env)
    obs, _, _ = _batch(actor, env)
    F = _explicit_fisher(actor, obs)
    params = list(actor.parameters())
    old = tuple(t.detach() for t in policy_distribution(actor, obs))
    fvp = fisher_vector_product(policy_kl(actor, obs, old).mean(), params, damping=0.07)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):  # the same graph serves several products
        v = torch.randn(F.shape[0], generator=g, dtype=F64)
        torch.testing.assert_close(fvp(v), F @ v + 0.07 * v)
    # F is symmetric positive semi-definite
    torch.testing.assert_close(F, F.T)
    assert torch.linalg.eigvalsh(F).min() > -1e-10


def test_categorical_fisher_is_the_expected_score_outer_product():
    """Independent oracle: ``F = mean_s sum_a pi(a|s) grad log pi(a|s) grad log pi(a|s)^T``."""
    actor = _actor("cartpole")
    obs, _, _ = _batch(actor, "cartpole")
    theta0 = parameters_to_vector(actor.parameters()).detach()

    class LogProbs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.actor = actor

        def forward(self, o):
            return torch.log_softmax(self.actor.logits(o), -1)

    module = LogProbs()
    J = torch.autograd.functional.jacobian(
        lambda th: torch.func.functional_call(module, _unflatten(actor, th), (obs,)), theta0
    )  # [B, K, P]
    with torch.no_grad():
        p = torch.softmax(actor.logits(obs), -1)
    scores = torch.einsum("bk,bkp,bkq->pq", p, J, J) / obs.shape[0]
    torch.testing.assert_close(_explicit_fisher(actor, obs), scores)


def test_conjugate_gradient_solves_an_spd_system():
    g = torch.Generator().manual_seed(0)
    n = 12
    M = torch.randn(n, n, generator=g, dtype=F64)
    A = M @ M.T + 0.5 * torch.eye(n, dtype=F64)
    b = torch.randn(n, generator=g, dtype=F64)
    want = torch.linalg.solve(A, b)
    torch.testing.assert_close(conjugate_gradient(lambda v: A @ v, b, iters=n, tol=0.0), want)
    # past convergence the tolerance freezes the iterate (no 0/0)
    x = conjugate_gradient(lambda v: A @ v, b, iters=4 * n, tol=1e-20)
    assert x.isfinite().all()
    torch.testing.assert_close(x, want)
    # fewer iterations: a worse but finite solution, the residual decreasing in A^{-1} norm
    x3 = conjugate_gradient(lambda v: A @ v, b, iters=3)
    assert x3.isfinite().all() and (A @ x3 - b).norm() < b.norm()


def test_line_search_takes_the_first_acceptable_fraction_or_keeps_theta():
    theta, step = torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)
    fractions = torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=F64)

    def evaluate(th):  # improvement positive below 0.6, KL = f^2 (accepted if <= 0.1)
        f = th[0]
        return 0.6 - f, f**2

    new, frac = line_search(evaluate, theta, step, max_kl=0.1, fractions=fractions)
    assert frac == 0.25 and torch.equal(new, theta + 0.25 * step)
    new, frac = line_search(evaluate, theta, step, max_kl=1e-6, fractions=fractions)
    assert frac == 0 and torch.equal(new, theta)

    def nan_eval(th):
        return torch.tensor(float("nan"), dtype=F64), th[0] * 0

    assert line_search(nan_eval, theta, step, 0.1, fractions)[1] == 0


def _mean_kl_by_torch_distributions(old_actor, new_actor, obs) -> torch.Tensor:
    with torch.no_grad():
        if hasattr(old_actor, "logits"):
            p, q = (
                Categorical(logits=old_actor.logits(obs)),
                Categorical(logits=new_actor.logits(obs)),
            )
            return kl_divergence(p, q).mean()
        p = Normal(old_actor.mean(obs), old_actor.log_std.exp())
        q = Normal(new_actor.mean(obs), new_actor.log_std.exp())
        return kl_divergence(p, q).sum(-1).mean()


@pytest.mark.parametrize("env", ["pendulum", "cartpole"])
@pytest.mark.parametrize("max_kl", [0.01, 0.2])
def test_trpo_step_keeps_kl_within_max_kl_and_improves_the_surrogate(env, max_kl):
    actor = _actor(env)
    old_actor = _actor(env)
    obs, actions, adv = _batch(actor, env, rows=256)
    with torch.no_grad():
        old_logp, _ = actor.log_prob_entropy(obs, actions)
    stats = trpo.natural_policy_step(
        actor,
        obs,
        actions,
        adv,
        delta=max_kl,
        fractions=[0.8**i for i in range(10)],
        cg_iters=10,
        cg_damping=0.1,
    )
    gain, kl, fraction = stats[:3]
    assert fraction > 0  # a step was taken
    moved = parameters_to_vector(actor.parameters()) - parameters_to_vector(old_actor.parameters())
    assert moved.abs().max() > 1e-4
    want_kl = _mean_kl_by_torch_distributions(old_actor, actor, obs)
    torch.testing.assert_close(kl, want_kl)
    assert want_kl <= max_kl
    with torch.no_grad():
        logp, _ = actor.log_prob_entropy(obs, actions)
    surrogate = ((logp - old_logp).exp() * adv).mean() - adv.mean()  # L(theta) - L(theta_old)
    torch.testing.assert_close(gain, surrogate)
    assert surrogate > 0


@pytest.mark.parametrize("env", ["pendulum", "cartpole"])
def test_npg_step_is_the_normalised_natural_gradient(env):
    """Without a line search the step is ``sqrt(2 delta / g^T A^{-1} g) A^{-1} g`` with
    ``A = F + lambda I`` (conjugate gradient run to convergence)."""
    actor = _actor(env)
    obs, actions, adv = _batch(actor, env)
    theta0 = parameters_to_vector(actor.parameters()).detach().clone()
    A = _explicit_fisher(actor, obs) + 0.1 * torch.eye(theta0.numel(), dtype=F64)
    g = _surrogate_grad(actor, obs, actions, adv)
    s = torch.linalg.solve(A, g)
    want = torch.sqrt(2 * 0.02 / (g @ s)) * s
    stats = trpo.natural_policy_step(
        actor,
        obs,
        actions,
        adv,
        delta=0.02,
        fractions=npg.npg_step_rule(npg.NPGConfig(step_size=0.02))[1],
        cg_iters=3 * theta0.numel(),
        cg_damping=0.1,
        cg_tol=1e-24,
    )
    step = parameters_to_vector(actor.parameters()).detach() - theta0
    torch.testing.assert_close(step, want)
    assert stats[2] == 1.0
    # the (damped) quadratic KL model of the step is delta; the exact KL is below it here
    torch.testing.assert_close(0.5 * step @ A @ step, torch.tensor(0.02, dtype=F64))
    assert 0 < stats[1] < 0.02


def test_trust_region_step_and_set_flat_params():
    s, Fs = torch.tensor([3.0, 4.0], dtype=F64), torch.tensor([6.0, 8.0], dtype=F64)
    d = trust_region_step(s, Fs, 0.5)  # s^T F s = 50: d = sqrt(1 / 50) s
    torch.testing.assert_close(d, s / 50**0.5)
    layer = nn.Linear(2, 3)
    storage = [p.data_ptr() for p in layer.parameters()]
    set_flat_params(list(layer.parameters()), torch.arange(9.0))
    assert torch.equal(layer.weight, torch.arange(6.0).view(3, 2))
    assert torch.equal(layer.bias, torch.tensor([6.0, 7.0, 8.0]))
    assert [p.data_ptr() for p in layer.parameters()] == storage


@pytest.mark.parametrize(
    ("cls", "field", "kwargs"),
    [
        (trpo.TRPOConfig, "max_kl", {"max_kl": 0.0}),
        (trpo.TRPOConfig, "backtrack_coef", {"backtrack_coef": 1.0}),
        (trpo.TRPOConfig, "backtrack_iters", {"backtrack_iters": 0}),
        (trpo.TRPOConfig, "cg_iters", {"cg_iters": 0}),
        (trpo.TRPOConfig, "vf_minibatches", {"num_envs": 3, "num_steps": 5, "vf_minibatches": 2}),
        (npg.NPGConfig, "step_size", {"step_size": -0.1}),
        (npg.NPGConfig, "cg_damping", {"cg_damping": -1.0}),
        (npg.NPGConfig, "total_steps", {"total_steps": 10}),
    ],
)
def test_bad_config_names_the_field(cls, field, kwargs):
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


# --------------------------------------------------------------------------- runs
@pytest.mark.parametrize("algo", ["trpo", "npg"])
@pytest.mark.parametrize("env", ["pendulum", "cartpole"])
def test_resume_reproduces_uninterrupted_run(algo, env, tmp_path):
    cfg = TINY[algo]
    full = train_by_name(algo, env, cfg, seed=1)
    assert len(full.history) == 4 and full.agent.algo == algo
    ckpt = tmp_path / "ckpt.pt"
    partial = train_by_name(
        algo, env, cfg, seed=1, checkpoint=ckpt, callback=lambda rec: rec["iteration"] < 2
    )
    assert len(partial.history) == 2
    resumed = train_by_name(algo, env, cfg, seed=1, resume=ckpt)
    for a, b in zip(full.history, resumed.history, strict=True):
        assert {k: v for k, v in a.items() if k != "wall_time"} == pytest.approx(
            {k: v for k, v in b.items() if k != "wall_time"}, nan_ok=True, rel=0, abs=0
        )
    sa, sb = full.agent.state_dict(), resumed.agent.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], torch.Tensor):
            assert torch.equal(sa[k], sb[k]), k
    loaded = load(ckpt)
    assert loaded.algo == algo and loaded.config == cfg


def test_npg_steps_without_line_search_trpo_with():
    trpo_hist = train_by_name("trpo", "pendulum", TINY["trpo"], seed=0).history
    npg_hist = train_by_name("npg", "pendulum", TINY["npg"], seed=0).history
    assert all(r["step_fraction"] == 1.0 for r in npg_hist)
    assert all(r["kl"] <= TINY["trpo"].max_kl for r in trpo_hist)
    assert all(r["surrogate_gain"] > 0 or r["step_fraction"] == 0 for r in trpo_hist)


@pytest.mark.parametrize("algo", ["trpo", "npg"])
def test_train_then_eval_through_the_cli(algo, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    args = ["--total-steps", "256", "--num-envs", "4", "--num-steps", "32", "--vf-minibatches", "2"]
    args += ["--hidden", "16", "16", "--out", str(out), "--no-progress"]
    assert main(["train", algo, "--env", "pendulum", *args]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [r["step"] for r in history] == [128, 256]
    agent = load(out / "model.pt")
    assert agent.algo == algo and agent.config.hidden == (16, 16) and agent.config.num_envs == 4
    capsys.readouterr()
    assert main(["eval", str(out / "model.pt"), "--episodes", "2"]) == 0
    assert "mean return" in capsys.readouterr().out
    # resume through the CLI into another folder
    more = ["--total-steps", "384", "--num-envs", "4", "--num-steps", "32", "--vf-minibatches", "2"]
    more += ["--hidden", "16", "16", "--out", str(tmp_path / "more"), "--no-progress"]
    resume = ["--resume", str(out / "model.pt")]
    assert main(["train", algo, "--env", "pendulum", *more, *resume]) == 0
    history = json.loads((tmp_path / "more" / "history.json").read_text())
    assert [r["step"] for r in history] == [128, 256, 384]


def test_discrete_and_continuous_agents_act():
    for env in ("pendulum", "cartpole"):
        spec = make(env).spec
        cfg = dataclasses.replace(TINY["trpo"], hidden=(8,))
        agent = trpo.make_agent(spec, cfg, seed=0)
        obs = torch.zeros(3, spec.obs_dim)
        a = agent.act(obs, deterministic=True)
        assert a.shape == ((3,) if spec.discrete else (3, spec.act_dim))


# --------------------------------------------------------------------------- learning
def _eval(agent, env: str) -> float:
    return evaluate(agent, env, episodes=20, seed=123)["mean_return"]


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["trpo", "npg"])
def test_pendulum_preset_reaches_minus_250(algo):
    result = train_by_name(algo, "pendulum", seed=0)
    assert _eval(result.agent, "pendulum") >= -250


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["trpo", "npg"])
def test_cartpole_preset_reaches_475(algo):
    result = train_by_name(algo, "cartpole", seed=0)
    assert _eval(result.agent, "cartpole") >= 475
