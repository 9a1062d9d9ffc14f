"""Proximal policy optimisation (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms"), with the implementation details of Huang et al. 2022 ("The 37 implementation
details of PPO", i.e. CleanRL's ``ppo.py`` / ``ppo_continuous_action.py``):

clipped surrogate objective (eq. 7), clipped value loss, GAE(lambda), per-minibatch advantage
normalisation, several epochs of minibatch Adam updates, observation normalisation, reward
scaling by the running std of the discounted return, global gradient-norm clipping, entropy
bonus, optional early stop on an approximate KL, linear learning-rate annealing, orthogonal init.

The file reads top to bottom as one iteration runs: config, networks (a policy net and a value
net), loss, update, then ``train``: rollout, returns, epochs of minibatch updates. Everything
is plain autograd. ``config.compile`` compiles the loss (its forward and backward graphs) with
``torch.compile``; the first run in a process compiles it (seconds), later processes mostly
load it from inductor's on-disk cache. The whole loop stays on the env's device; the host
reads numbers once per iteration (the history record), plus once per epoch when
``target_kl`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from diffctl.agents.agent import Agent, TrainResult, seeded_init
from diffctl.agents.loop import Callback, TrainLoop
from diffctl.agents.networks import ValueCritic, stochastic_policy
from diffctl.agents.runner import check_action_space, collect_on_policy, setup_runner
from diffctl.configs.agents import PPO_PRESETS as PRESETS
from diffctl.configs.agents import PPOConfig
from diffctl.data import RunningNormalizer, gae

__all__ = [
    "PPOConfig",
    "PRESETS",
    "CONFIG",
    "STATS",
    "default_config",
    "clipped_surrogate",
    "clipped_value_loss",
    "ppo_loss",
    "make_agent",
    "make_update",
    "train",
]

CONFIG = PPOConfig

#: What ``ppo_loss`` reports per minibatch, in this order (the history averages them).
STATS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")


def default_config(env_name: str) -> PPOConfig:
    """The tuned preset for ``env_name`` (the generic defaults otherwise)."""
    return PRESETS.get(env_name, PPOConfig())


# --------------------------------------------------------------------------- networks
def make_agent(spec: Any, config: PPOConfig, seed: int = 0) -> Agent:
    """A categorical or Gaussian policy (the agent's ``actor``) and a state-value critic
    (``nets["critic"]``), two separate MLPs initialised from ``seed``, the policy first."""

    def build() -> Agent:
        actor = stochastic_policy(spec, config.hidden, config.activation, config.log_std_init)
        critic = ValueCritic(spec.obs_dim, config.hidden, config.activation)
        norm = RunningNormalizer((spec.obs_dim,), clip=config.obs_clip) if config.norm_obs else None
        return Agent("ppo", spec, config, actor, {"critic": critic}, obs_normalizer=norm)

    return seeded_init(seed, build)


# --------------------------------------------------------------------------- loss
def clipped_surrogate(ratio: Tensor, advantages: Tensor, clip_coef: float) -> Tensor:
    """Per-sample clipped surrogate ``min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` (PPO eq. 7),
    to be maximised. Its gradient in ``rho`` is ``A`` inside the trust region and zero where
    clipping makes the bound pessimistic (``A > 0, rho > 1 + eps`` or ``A < 0, rho < 1 - eps``)."""
    return torch.minimum(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)


def clipped_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, clip_coef: float
) -> Tensor:
    """``0.5 max((V - y)^2, (V_old + clip(V - V_old, -eps, eps) - y)^2)``, mean over the batch
    (CleanRL's clipped value loss; all ``[B]``)."""
    clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2).mean()


def ppo_loss(
    actor: nn.Module,
    critic: nn.Module,
    config: PPOConfig,
    obs: Tensor,
    actions: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    returns: Tensor,
    old_values: Tensor,
) -> tuple[Tensor, Tensor]:
    """``(loss [], stats [5])`` of one minibatch of ``B`` samples: ``obs [B, obs_dim]`` (as the
    networks see them), ``actions [B, act_dim]`` (int64 ``[B]`` if discrete), and the rollout's
    ``old_log_probs``, GAE ``advantages``, ``returns`` and ``old_values``, all ``[B]``.

    ``loss = -surrogate + vf_coef * value loss - ent_coef * entropy`` (PPO eq. 9, with the
    clipped value loss when ``config.clip_vloss``); ``stats`` holds the ``STATS`` (detached):
    the policy loss, value loss, mean entropy, the k3 estimate ``mean((rho - 1) - log rho)`` of
    ``KL(pi_old || pi)`` (Schulman 2020, "Approximating KL divergence") and the fraction of
    samples with ``|rho - 1| > eps``."""
    log_probs, entropy = actor.log_prob_entropy(obs, actions)
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    if config.norm_adv:  # per minibatch
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_loss = -clipped_surrogate(ratio, advantages, config.clip_coef).mean()
    values = critic(obs)
    if config.clip_vloss:
        value_loss = clipped_value_loss(values, old_values, returns, config.clip_coef)
    else:
        value_loss = 0.5 * ((values - returns) ** 2).mean()
    mean_entropy = entropy.mean()
    loss = policy_loss - config.ent_coef * mean_entropy + config.vf_coef * value_loss
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clipfrac = ((ratio - 1).abs() > config.clip_coef).to(ratio.dtype).mean()
        stats = torch.stack([policy_loss, value_loss, mean_entropy, approx_kl, clipfrac])
    return loss, stats


# --------------------------------------------------------------------------- update
def make_update(
    agent: Agent, optimizer: torch.optim.Optimizer, config: PPOConfig
) -> Callable[..., Tensor]:
    """The minibatch update ``update(obs, actions, old_log_probs, advantages, returns,
    old_values) -> stats [5]`` (``ppo_loss``'s arguments and stats): the loss, its gradient,
    the global gradient-norm clip and one step of ``optimizer`` (over ``agent.parameters()``).
    With ``config.compile`` the loss and its backward run as ``torch.compile``'d graphs."""
    actor, critic = agent.actor, agent.nets["critic"]
    params = list(agent.parameters())

    def loss_fn(*minibatch: Tensor) -> tuple[Tensor, Tensor]:
        return ppo_loss(actor, critic, config, *minibatch)

    if config.compile:
        # tanh as 2 / (1 + exp(-2x)) - 1 in inductor's CPU kernels: its vectorised tanh is
        # several times slower than eager's (MKL's) here: 15% off the update (measured)
        loss_fn = torch.compile(loss_fn, dynamic=False, options={"cpp.use_decompose_tanh": True})

    def update(*minibatch: Tensor) -> Tensor:
        loss, stats = loss_fn(*minibatch)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, config.max_grad_norm, foreach=True)
        optimizer.step()
        return stats

    return update


# --------------------------------------------------------------------------- training
def train(
    env: Any,
    config: PPOConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train PPO on ``env`` (a name, ``Env``, ``VecEnv`` or ``from_gymnasium`` runner).

    Args:
        config: hyperparameters (default: ``default_config(env name)``).
        seed: seeds the networks, the action sampling, the minibatch order and the env.
        device: where to run when ``env`` is a name or an ``Env`` (default: the env's).
        checkpoint: file to write the agent and training state to, every ``checkpoint_every``
            iterations (0: only at the end) and when a callback stops training.
        resume: a checkpoint to continue from (same env and config).
        callback: ``callback(record)`` once per iteration; returning ``False`` stops.
    """
    runner, cfg = setup_runner(env, config, PPOConfig, default_config, seed, device)
    spec = runner.spec
    check_action_space(spec, "ppo", discrete=True, continuous=True)
    dev = runner.device
    agent = make_agent(spec, cfg, seed).to(dev)
    critic = agent.nets["critic"]
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5, fused=True)
    update = make_update(agent, optimizer, cfg)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    # reward scaling (gym's NormalizeReward): divide by the std of the discounted return
    ret_norm = RunningNormalizer((), device=dev)
    runner.reset(seed=seed)
    parts = {"optimizer": optimizer, "generator": gen, "ret_norm": ret_norm, "runner": runner}
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
        if cfg.anneal_lr:  # linear decay to 0 over the run (CleanRL)
            frac = 1.0 - (iteration - 1.0) / num_iterations
            optimizer.param_groups[0]["lr"] = frac * cfg.learning_rate

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
            values = critic(obs)
            next_values = critic(agent.normalize_obs(traj.next_obs))
            advantages, returns = gae(
                rewards,
                values,
                next_values,
                traj.terminated,
                traj.truncated,
                cfg.gamma,
                cfg.gae_lambda,
                check_finite=False,  # no host sync per iteration
            )
        if agent.obs_normalizer is not None:
            agent.obs_normalizer.update(traj.obs.reshape(-1, spec.obs_dim))

        # ---- update: epochs of shuffled minibatches
        batch = [obs, traj.extras["sample"], traj.extras["log_prob"], advantages, returns, values]
        batch = [x.flatten(0, 1) for x in batch]
        stats = []
        for _ in range(cfg.update_epochs):
            perm = torch.randperm(cfg.batch_size, generator=gen, device=dev)
            for rows in perm.split(cfg.minibatch_size):
                stats.append(update(*(x[rows] for x in batch)))
            if cfg.target_kl is not None and bool(stats[-1][3] > cfg.target_kl):
                break  # one host sync per epoch
        losses: dict[str, Any] = dict(zip(STATS, torch.stack(stats).mean(0)))
        losses["lr"] = optimizer.param_groups[0]["lr"]
        losses["epochs"] = len(stats) // cfg.num_minibatches
        if not loop.log(
            iteration * cfg.batch_size,
            iteration,
            losses,
            state={"disc_return": disc_return, "iteration": iteration},
            last=iteration == num_iterations,
        ):
            break
    return loop.result()
