"""Trust region policy optimisation (Schulman et al. 2015, "Trust Region Policy Optimization",
the single-path variant with the GAE(lambda) value critic of Schulman et al. 2016).

Each iteration runs ``num_envs`` envs for ``num_steps`` steps, computes GAE advantages, and
takes one constrained step on the policy:

    maximise  L(theta) = mean(pi_theta(a|s) / pi_old(a|s) A)
    s.t.      mean_s KL(pi_old(.|s) || pi_theta(.|s)) <= max_kl

by the recipe of the paper's Appendix C (the maths in ``natural_gradient``): the gradient
``g`` of ``L``; the natural direction ``s ~= F^{-1} g`` by conjugate gradient on Fisher-vector
products (double backprop of the mean KL, damped); the full step
``sqrt(2 max_kl / s^T F s) s``; a backtracking line search along it that keeps the first
fraction with ``KL <= max_kl`` and ``L`` improved (the old parameters if none). The value
critic is then fitted separately, by epochs of minibatch Adam steps on the lambda-returns.
Observations may be normalised and rewards scaled as ``ppo`` does.

``npg`` (``diffctl.agents.npg``) is this same loop with the step rule changed: no line search,
the natural step scaled to ``0.5 d^T F d = step_size`` (``run`` takes the rule).
Everything is plain autograd and stays on the env's device; the host reads numbers once per
iteration (the history record).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector

from diffctl.agents.agent import Agent, TrainResult, seeded_init
from diffctl.agents.loop import Callback, TrainLoop
from diffctl.agents.natural_gradient import (
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    kl_divergence,
    line_search,
    policy_distribution,
    set_flat_params,
    trust_region_step,
)
from diffctl.agents.networks import ValueCritic, stochastic_policy
from diffctl.agents.runner import check_action_space, collect_on_policy, setup_runner
from diffctl.configs.agents import TRPO_PRESETS as PRESETS
from diffctl.configs.agents import TRPOConfig
from diffctl.data import RunningNormalizer, gae

__all__ = [
    "TRPOConfig",
    "PRESETS",
    "CONFIG",
    "STATS",
    "StepRule",
    "default_config",
    "build_agent",
    "make_agent",
    "trpo_step_rule",
    "natural_policy_step",
    "fit_critic",
    "run",
    "train",
]

CONFIG = TRPOConfig

#: What ``natural_policy_step`` reports (then ``value_loss`` from ``fit_critic``), in order.
STATS = ("surrogate_gain", "kl", "step_fraction", "entropy", "grad_norm", "value_loss")

#: ``rule(config) -> (delta, fractions)``: the trust-region size ``delta`` the full step is
#: scaled to, and the step fractions the line search tries (``None``: no line search).
StepRule = Callable[[Any], "tuple[float, list[float] | None]"]


def default_config(env_name: str) -> TRPOConfig:
    """The tuned preset for ``env_name`` (the generic defaults otherwise)."""
    return PRESETS.get(env_name, TRPOConfig())


def trpo_step_rule(config: TRPOConfig) -> tuple[float, list[float]]:
    """TRPO's: the full step on the ``max_kl`` boundary, then backtracking by
    ``backtrack_coef`` (fractions ``1, c, c^2, ...``, ``backtrack_iters`` of them)."""
    return config.max_kl, [config.backtrack_coef**i for i in range(config.backtrack_iters)]


# --------------------------------------------------------------------------- networks
def build_agent(algo: str, spec: Any, config: Any, seed: int = 0) -> Agent:
    """The ``algo`` agent (``"trpo"`` or ``"npg"``): a categorical or Gaussian policy (the
    ``actor``) and a state-value critic (``nets["critic"]``), two MLPs initialised from
    ``seed``, the policy first; an observation normaliser when ``config.norm_obs``."""

    def build() -> Agent:
        actor = stochastic_policy(spec, config.hidden, config.activation, config.log_std_init)
        critic = ValueCritic(spec.obs_dim, config.hidden, config.activation)
        norm = RunningNormalizer((spec.obs_dim,), clip=config.obs_clip) if config.norm_obs else None
        return Agent(algo, spec, config, actor, {"critic": critic}, obs_normalizer=norm)

    return seeded_init(seed, build)


def make_agent(spec: Any, config: TRPOConfig, seed: int = 0) -> Agent:
    return build_agent("trpo", spec, config, seed)


# --------------------------------------------------------------------------- policy step
def natural_policy_step(
    actor: nn.Module,
    obs: Tensor,
    actions: Tensor,
    advantages: Tensor,
    *,
    delta: float,
    fractions: list[float] | None,
    cg_iters: int,
    cg_damping: float,
    cg_tol: float = 1e-10,
) -> Tensor:
    """One natural-gradient step on ``actor``'s parameters, in place, from a batch of ``B``
    samples: ``obs [B, obs_dim]`` (as the policy saw them), ``actions [B, act_dim]`` (int64
    ``[B]`` if discrete) and ``advantages [B]``; the actor's current parameters are
    ``theta_old``. Returns the stats ``[5]`` (``STATS[:5]``): the surrogate improvement
    ``L(theta) - L(theta_old)``, the mean ``KL(pi_old || pi_theta)`` after the step, the step
    fraction taken (0: rejected), the mean entropy and ``|g|`` before the step.

    ``g = grad L``, ``s = CG(F + cg_damping I, g)``, ``d = sqrt(2 delta / s^T F s) s``; with
    ``fractions`` (TRPO) the line search picks ``theta_old + f d``, without (NPG) the step is
    ``theta_old + d``."""
    params = list(actor.parameters())
    theta_old = parameters_to_vector(params).detach()
    with torch.no_grad():
        # cloned: a Gaussian's log_std is a view of the parameter the step overwrites
        old = tuple(t.detach().clone() for t in policy_distribution(actor, obs))
        old_logp, entropy = actor.log_prob_entropy(obs, actions)

    def surrogate() -> Tensor:
        """``L(theta) = mean(exp(log pi_theta - log pi_old) A)`` at the actor's parameters."""
        logp, _ = actor.log_prob_entropy(obs, actions)
        return ((logp - old_logp).exp() * advantages).mean()

    def mean_kl() -> Tensor:
        return kl_divergence(actor, obs, old).mean()

    surrogate_old = surrogate()
    g = flat_grad(surrogate_old, params)
    fvp = fisher_vector_product(mean_kl(), params, cg_damping)
    s = conjugate_gradient(fvp, g, cg_iters, cg_tol)
    full_step = trust_region_step(s, fvp(s), delta)
    surrogate_old = surrogate_old.detach()

    def evaluate(theta: Tensor) -> tuple[Tensor, Tensor]:
        """``(L(theta) - L(theta_old), mean KL)`` of candidate parameters ``theta [P]``."""
        set_flat_params(params, theta)
        with torch.no_grad():
            return surrogate() - surrogate_old, mean_kl()

    if fractions is None:
        theta, fraction = theta_old + full_step, torch.ones((), device=g.device, dtype=g.dtype)
    else:
        table = torch.tensor(fractions, device=g.device, dtype=g.dtype)
        theta, fraction = line_search(evaluate, theta_old, full_step, delta, table)
    gain, kl = evaluate(theta)  # also leaves theta in the actor
    return torch.stack([gain, kl, fraction, entropy.mean(), g.norm()]).detach()


# --------------------------------------------------------------------------- critic
def fit_critic(
    critic: nn.Module,
    optimizer: torch.optim.Optimizer,
    obs: Tensor,
    returns: Tensor,
    epochs: int,
    minibatches: int,
    generator: torch.Generator,
) -> Tensor:
    """Fit ``V(obs [B, obs_dim]) ~= returns [B]`` by ``epochs`` passes of shuffled minibatch
    steps of ``optimizer`` on ``0.5 mean((V - R)^2)``; returns the mean loss of the last epoch
    ``[]``."""
    losses = []
    for _ in range(epochs):
        losses = []
        perm = torch.randperm(obs.shape[0], generator=generator, device=obs.device)
        for rows in perm.chunk(minibatches):
            loss = 0.5 * ((critic(obs[rows]) - returns[rows]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
    return torch.stack(losses).mean()


# --------------------------------------------------------------------------- training
def run(
    algo: str,
    env: Any,
    config: Any,
    seed: int,
    *,
    config_type: type,
    default: Callable[[str], Any],
    step_rule: StepRule,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """The training loop of TRPO and NPG (``algo``): rollout, GAE, one
    ``natural_policy_step`` with ``step_rule(config)``, ``fit_critic``. ``config_type`` and
    ``default`` (env name -> preset) are the algorithm's; other arguments as ``train``."""
    runner, cfg = setup_runner(env, config, config_type, default, seed, device)
    spec = runner.spec
    check_action_space(spec, algo, discrete=True, continuous=True)
    dev = runner.device
    agent = build_agent(algo, spec, cfg, seed).to(dev)
    actor, critic = agent.actor, agent.nets["critic"]
    vf_optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.vf_lr, eps=1e-5, fused=True)
    delta, fractions = step_rule(cfg)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    # reward scaling (gym's NormalizeReward): divide by the std of the discounted return
    ret_norm = RunningNormalizer((), device=dev)
    runner.reset(seed=seed)
    parts = {"vf_optimizer": vf_optimizer, "generator": gen, "ret_norm": ret_norm, "runner": runner}
    loop = TrainLoop(
        agent,
        runner,
        parts,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        callback=callback,
    )
    state = loop.resume(
        resume, {"disc_return": torch.zeros(runner.num_envs, device=dev), "iteration": 0}
    )
    disc_return, iteration = state["disc_return"], state["iteration"]
    num_iterations = cfg.total_steps // cfg.batch_size
    while iteration < num_iterations:
        iteration += 1

        # ---- rollout: [T, N] steps with the normaliser frozen
        traj = collect_on_policy(runner, agent, cfg.num_steps, gen)
        obs = traj.extras["policy_obs"]
        rewards = traj.rewards.to(torch.float32)
        if cfg.norm_reward:
            # G_t = gamma G_{t-1} + r_t, restarting after episode ends; r_t / std(G)
            not_done = (~(traj.terminated | traj.truncated)).to(rewards.dtype)
            seen = []
            for reward, keep in zip(rewards, not_done):
                disc_return = cfg.gamma * disc_return + reward
                seen.append(disc_return)
                disc_return = disc_return * keep
            ret_norm.update(torch.stack(seen).reshape(-1))
            scale = ret_norm.std.to(rewards.dtype)
            rewards = (rewards / scale).clamp(-cfg.reward_clip, cfg.reward_clip)

        # ---- returns: GAE(lambda) advantages and lambda-returns (Schulman et al. 2016)
        with torch.no_grad():
            advantages, returns = gae(
                rewards,
                critic(obs),
                critic(agent.normalize_obs(traj.next_obs)),
                traj.terminated,
                traj.truncated,
                cfg.gamma,
                cfg.gae_lambda,
                check_finite=False,  # no host sync per iteration
            )
        if agent.obs_normalizer is not None:
            agent.obs_normalizer.update(traj.obs.reshape(-1, spec.obs_dim))
        obs, actions = obs.flatten(0, 1), traj.extras["sample"].flatten(0, 1)
        advantages, returns = advantages.flatten(), returns.flatten()
        if cfg.norm_adv:  # over the whole batch
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        # ---- update: one natural-gradient step on the policy, then the critic
        stats = natural_policy_step(
            actor,
            obs,
            actions,
            advantages,
            delta=delta,
            fractions=fractions,
            cg_iters=cfg.cg_iters,
            cg_damping=cfg.cg_damping,
            cg_tol=cfg.cg_tol,
        )
        value_loss = fit_critic(
            critic, vf_optimizer, obs, returns, cfg.vf_epochs, cfg.vf_minibatches, gen
        )
        losses = dict(zip(STATS, [*stats, value_loss]))
        if not loop.log(
            iteration * cfg.batch_size,
            iteration,
            losses,
            state={"disc_return": disc_return, "iteration": iteration},
            last=iteration == num_iterations,
        ):
            break
    return loop.result()


def train(
    env: Any,
    config: TRPOConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train TRPO on ``env`` (a name, ``Env``, ``VecEnv`` or ``from_gymnasium`` runner).

    Args:
        config: hyperparameters (default: ``default_config(env name)``).
        seed: seeds the networks, the action sampling, the critic's minibatch order and the env.
        device: where to run when ``env`` is a name or an ``Env`` (default: the env's).
        checkpoint: file to write the agent and training state to, every ``checkpoint_every``
            iterations (0: only at the end) and when a callback stops training.
        resume: a checkpoint to continue from (same env and config).
        callback: ``callback(record)`` once per iteration; returning ``False`` stops.
    """
    return run(
        "trpo",
        env,
        config,
        seed,
        config_type=TRPOConfig,
        default=default_config,
        step_rule=trpo_step_rule,
        device=device,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        callback=callback,
    )
