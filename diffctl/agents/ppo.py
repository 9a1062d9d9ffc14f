"""Proximal policy optimisation (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms"), with the implementation details of Huang et al. 2022 ("The 37 implementation
details of PPO", i.e. CleanRL's ``ppo.py`` / ``ppo_continuous_action.py``):

clipped surrogate objective (eq. 7), clipped value loss, GAE(lambda), per-minibatch advantage
normalisation, several epochs of minibatch Adam updates, observation normalisation, reward
scaling by the running std of the discounted return, global gradient-norm clipping, entropy
bonus, optional early stop on an approximate KL, linear learning-rate annealing, orthogonal init.

The whole rollout and update stay on the env's device; the host reads numbers once per
iteration (the history record), plus once per epoch when ``target_kl`` is set. The policy and
the critic are one stacked network (``networks.ActorCritic``): a minibatch update runs both in
one forward and backward pass. For Gaussian policies (tanh / relu nets) that pass is written by
hand (``networks.ManualActorCritic`` and ``_ManualGaussianUpdate``: the loss's gradient derived
analytically, without autograd, in a third of the ops); ``tests/agents/test_ppo_grad.py``
checks it against autograd. The loop then runs under ``torch.inference_mode`` when ``train``
built the env runner itself and the env steps as fast there (``common.loop_mode``); the agent
it returns keeps normal tensors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffctl.agents.common import (
    Agent,
    Callback,
    FlatAdam,
    IterationLogger,
    TrainResult,
    check_action_space,
    collect_on_policy,
    load_checkpoint,
    loop_mode,
    restore_runner,
    runner_state,
    seeded_init,
    setup_runner,
)
from diffctl.agents.networks import (
    ActorCritic,
    CategoricalActorCritic,
    GaussianActorCritic,
    ManualActorCritic,
)
from diffctl.configs.agents import PPO_PRESETS as PRESETS
from diffctl.configs.agents import PPOConfig
from diffctl.data import RunningNormalizer, gae

__all__ = [
    "PPOConfig",
    "PRESETS",
    "CONFIG",
    "default_config",
    "clipped_surrogate",
    "clipped_value_loss",
    "make_agent",
    "make_update",
    "train",
]

_LOG_2PI = math.log(2 * math.pi)


CONFIG = PPOConfig


def default_config(env_name: str) -> PPOConfig:
    """The tuned preset for ``env_name`` (the generic defaults otherwise)."""
    return PRESETS.get(env_name, PPOConfig())


# --------------------------------------------------------------------------- losses
def clipped_surrogate(ratio: Tensor, advantages: Tensor, clip_coef: float) -> Tensor:
    """Per-sample clipped surrogate ``min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` (PPO eq. 7),
    to be maximised. Its gradient in ``rho`` is ``A`` inside the trust region and zero where
    clipping makes the bound pessimistic (``A > 0, rho > 1 + eps`` or ``A < 0, rho < 1 - eps``)."""
    return torch.minimum(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)


def clipped_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, clip_coef: float
) -> Tensor:
    """``0.5 max((V - y)^2, (V_old + clip(V - V_old, -eps, eps) - y)^2)``, mean over the batch."""
    return 0.5 * _value_terms(values, old_values, returns, clip_coef).mean()


def _value_terms(
    values: Tensor, old_values: Tensor, returns: Tensor, clip_coef: float | None
) -> Tensor:
    """Per sample ``max((V - y)^2, (V_old + clip(V - V_old, -eps, eps) - y)^2)``, or
    ``(V - y)^2`` without clipping (``clip_coef=None``)."""
    if clip_coef is None:
        return (values - returns) ** 2
    clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
    return torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)


def _approx_kl(logratio: Tensor) -> Tensor:
    """The k3 estimator ``mean((rho - 1) - log rho)`` of ``KL(pi_old || pi)`` (Schulman 2020,
    "Approximating KL divergence"), from ``log rho = log pi - log pi_old``."""
    return (torch.expm1(logratio) - logratio).mean()


# --------------------------------------------------------------------------- minibatch update
Minibatch = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]
"""``(obs, actions, old log-probs, advantages (normalised as configured), returns, old values)``"""
Diagnostics = tuple[Tensor, Tensor, Tensor, Tensor]
"""Where an update writes ``log(pi / pi_old) [B]``, the clipped surrogate ``[B]``, the value
loss term ``[B]`` (``_value_terms``) and minus the mean entropy ``[]`` of its minibatch."""


def make_update(
    ac: ActorCritic, optimizer: FlatAdam, config: PPOConfig
) -> Callable[[Minibatch, Diagnostics], None]:
    """The minibatch update ``update(minibatch, diagnostics)``: the loss ``L = -surrogate
    + vf_coef * value loss - ent_coef * entropy`` (PPO eq. 9 with the clipped value loss),
    its gradient, the global gradient-norm clip and one Adam step.

    Hand-derived (``_ManualGaussianUpdate``) for a ``GaussianActorCritic`` with an activation
    of ``ManualActorCritic.ACTIVATIONS`` when ``config.manual_grad``; autograd otherwise
    (categorical policies, other activations). ``optimizer`` is the ``FlatAdam`` over
    ``ac``'s parameters."""
    if (
        config.manual_grad
        and isinstance(ac, GaussianActorCritic)
        and ac.activation in ManualActorCritic.ACTIVATIONS
    ):
        return _ManualGaussianUpdate(ac, optimizer, config)
    return _AutogradUpdate(ac, optimizer, config)


class _AutogradUpdate:
    """The minibatch update differentiated by autograd (any ``ActorCritic``)."""

    def __init__(self, ac: ActorCritic, optimizer: FlatAdam, config: PPOConfig) -> None:
        self.ac, self.optimizer, self.cfg = ac, optimizer, config

    def __call__(self, mb: Minibatch, out: Diagnostics) -> None:
        cfg = self.cfg
        obs, act, logp_old, adv, ret, val = mb
        logp, entropy, new_v = self.ac.evaluate(obs, act)
        logratio = logp - logp_old
        surrogate = clipped_surrogate(logratio.exp(), adv, cfg.clip_coef)
        pg_loss = -surrogate.mean()
        v_term = _value_terms(new_v, val, ret, cfg.clip_coef if cfg.clip_vloss else None)
        ent = entropy.mean()
        loss = pg_loss + cfg.vf_coef * (0.5 * v_term.mean())
        if cfg.ent_coef:  # (without a bonus, the entropy stays out of the backward)
            loss = loss - cfg.ent_coef * ent
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step(cfg.max_grad_norm)
        for o, v in zip(out, (logratio, surrogate, v_term, -ent)):
            o.copy_(v.detach())


class _ManualGaussianUpdate:
    """The minibatch update of a ``GaussianActorCritic`` with hand-derived gradients (the same
    loss as ``_AutogradUpdate``; tested against it in float64).

    With ``z = (a - mu) / sigma``, ``log pi = -sum(z^2 - 1) / 2 - entropy`` (the constants of the
    Gaussian log-density and entropy cancel but for that ``1``), ``rho = exp(log pi - log
    pi_old)`` and ``g = d min(rho A, clip(rho) A) / d log pi`` (per sample, of PPO eq. 7):
    ``d L / d mu = -g z / (sigma B)``, ``d L / d log sigma = -sum_B g (z^2 - 1) / B - ent_coef``
    and ``d L / d V = vf_coef (V - y) / B`` where the unclipped value term is the larger or inside
    the clip range (where both terms are equal), 0 where the clipped one is larger. The min / max
    / clamp subgradients are autograd's: a clamp passes the gradient at its bounds, and a tie of
    min or max takes half of it from each side (``heaviside(., 1/2)``). Only inside the value
    clip range, where ``V_old + (V - V_old)`` may differ from ``V`` by rounding, the gradient is
    ``V - y`` where autograd may take ``V_c - y`` (equal up to that rounding).
    """

    def __init__(self, ac: GaussianActorCritic, optimizer: FlatAdam, config: PPOConfig) -> None:
        rows = config.minibatch_size
        self.net = ManualActorCritic(ac, rows)
        self.optimizer, self.cfg = optimizer, config
        self.log_std_grad = ac.log_std.grad.view(1, -1)
        act_dim = ac.log_std.numel()
        like = ac.log_std.detach()

        def const(value: float, shape: tuple[int, ...] = ()) -> Tensor:
            return torch.full(shape, value, dtype=like.dtype, device=like.device)

        self.entropy_const = const(act_dim * (0.5 + 0.5 * _LOG_2PI))  # entropy - sum log sigma
        self.half, self.minus_one = const(0.5), const(-1.0)
        self.minus_ent_coef = const(-config.ent_coef, (1, act_dim))
        # d L / d log pi and d L / d V per sample: the scales of the mean over the batch
        # the scales of the mean over the batch, as tensors where they multiply a tensor (a
        # Python number there is converted to a tensor on every call)
        self.alpha_pi = -1.0 / rows
        self.scale_pi, self.scale_v = const(self.alpha_pi), const(config.vf_coef / rows)

    @torch.no_grad()
    def __call__(self, mb: Minibatch, out: Diagnostics) -> None:
        cfg, net = self.cfg, self.net
        obs, act, logp_old, adv, ret, val = mb
        out_logratio, out_surrogate, out_value, out_neg_entropy = out
        net.prepare()
        mu, v = net.forward(obs)
        # ---- policy: log-ratio, clipped surrogate (eq. 7), gradients in mu and log sigma
        neg_log_std = net.neg_log_std
        inv_std = neg_log_std.exp()
        neg_entropy = torch.sub(neg_log_std.sum(), self.entropy_const, out=out_neg_entropy)
        z = (act - mu) * inv_std
        z2m1 = torch.addcmul(self.minus_one, z, z)  # z^2 - 1
        logratio = torch.sub(
            torch.sub(neg_entropy, logp_old), z2m1.sum(-1), alpha=0.5, out=out_logratio
        )
        g = _surrogate_grad(logratio.exp(), adv, cfg.clip_coef, self.half, out_surrogate)
        grad_mu = (g[:, None] * z) * (inv_std * self.scale_pi)
        torch.addmm(self.minus_ent_coef, g[None], z2m1, alpha=self.alpha_pi, out=self.log_std_grad)
        # ---- value loss 0.5 max((V - y)^2, (V_c - y)^2), V_c = V_old + clip(V - V_old)
        clip_v = cfg.clip_coef if cfg.clip_vloss else None
        grad_v = _value_grad(v.view(-1), val, ret, clip_v, self.half, out_value)
        net.backward(grad_mu, grad_v.mul_(self.scale_v)[:, None])
        self.optimizer.step(cfg.max_grad_norm)


def _surrogate_grad(
    ratio: Tensor, adv: Tensor, clip_coef: float, half: Tensor, out: Tensor
) -> Tensor:
    """Writes ``clipped_surrogate(ratio, adv)`` to ``out`` and returns its derivative in
    ``log rho`` (``rho d / d rho``), with the subgradients autograd takes: through the unclipped
    side of the min (half of it at a tie), and through the clipped side while the clamp passes
    it (inside its bounds, bounds included, where both sides are equal)."""
    clipped = ratio.clamp(1 - clip_coef, 1 + clip_coef)
    unclipped_adv, clipped_adv = ratio * adv, clipped * adv
    torch.minimum(unclipped_adv, clipped_adv, out=out)
    through = torch.heaviside(clipped_adv - unclipped_adv, half)
    return unclipped_adv * through.masked_fill_(clipped == ratio, 1.0)


def _value_grad(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    clip_coef: float | None,
    half: Tensor,
    out: Tensor,
) -> Tensor:
    """Writes ``_value_terms(values, old_values, returns, clip_coef)`` to ``out`` and returns
    half its derivative in ``values`` (a new tensor), with autograd's subgradients of the max
    (half from each side at a tie) and of the clamp (passing at its bounds). Inside the clip
    range, where the clipped value ``V_old + (V - V_old)`` equals ``V`` up to rounding, it is
    ``V - y`` (autograd takes ``V_c - y`` where rounding makes that term the larger)."""
    err = values - returns
    if clip_coef is None:
        torch.mul(err, err, out=out)
        return err
    diff = values - old_values
    diff_clipped = diff.clamp(-clip_coef, clip_coef)
    sq, sq_clipped = err * err, (old_values + diff_clipped - returns).square()
    torch.maximum(sq, sq_clipped, out=out)
    through = torch.heaviside(sq - sq_clipped, half)
    return err * through.masked_fill_(diff_clipped == diff, 1.0)


# --------------------------------------------------------------------------- agent
def make_agent(spec: Any, config: PPOConfig, seed: int = 0) -> Agent:
    """A categorical or Gaussian policy and a V critic, initialised from ``seed``, held as one
    stacked ``ActorCritic`` (the agent's ``actor``; ``actor.value`` is the critic)."""

    def build() -> Agent:
        if spec.discrete:
            ac = CategoricalActorCritic(
                spec.obs_dim, spec.num_actions, config.hidden, config.activation
            )
        else:
            ac = GaussianActorCritic(
                spec.obs_dim, spec.act_dim, config.hidden, config.activation, config.log_std_init
            )
        norm = RunningNormalizer((spec.obs_dim,), clip=config.obs_clip) if config.norm_obs else None
        return Agent("ppo", spec, config, ac, obs_normalizer=norm)

    return seeded_init(seed, build)


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
    ac = agent.actor  # policy and critic, one stacked network
    # one flat parameter: Adam, zeroing and the grad-norm clip are one kernel each
    optimizer = FlatAdam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    # reward scaling (gym's NormalizeReward): divide by the std of the discounted return
    ret_norm = RunningNormalizer((), device=dev)
    disc_return = torch.zeros(runner.num_envs, device=dev)
    obs = runner.reset(seed=seed)
    num_iterations = cfg.total_steps // cfg.batch_size
    iteration, history, wall = 0, [], 0.0
    if resume is not None:
        saved, ts = load_checkpoint(resume, map_location=dev)
        if ts is None:
            raise ValueError(f"resume: {os.fspath(resume)!r} holds no training state")
        agent.load_state_dict(saved.state_dict())
        optimizer.load_state_dict(ts["optimizer"])
        gen.set_state(ts["generator"])
        ret_norm.load_state_dict(ts["ret_norm"])
        disc_return = ts["disc_return"].to(dev)
        restore_runner(runner, ts["runner"])
        obs = ts["obs"].to(dev)
        iteration, history, wall = ts["iteration"], ts["history"], ts["wall_time"]
    logger = IterationLogger(runner, checkpoint, checkpoint_every, callback, history, wall)
    update = make_update(ac, optimizer, cfg)
    # per minibatch update: log(pi / pi_old), the clipped surrogate and the value loss term
    # per sample, and minus the mean entropy (written by ``update``, read once per iteration)
    n_updates, rows = cfg.update_epochs * cfg.num_minibatches, cfg.minibatch_size
    dtype = agent.action_dtype
    diag = [torch.empty(n_updates, rows, device=dev, dtype=dtype) for _ in range(3)]
    diag.append(torch.empty(n_updates, device=dev, dtype=dtype))
    diag_rows = list(zip(*(d.unbind() for d in diag)))

    def snapshot() -> tuple[Agent, dict[str, Any]]:
        return agent, {
            "optimizer": optimizer.state_dict(),
            "generator": gen.get_state(),
            "ret_norm": ret_norm.state_dict(),
            "disc_return": disc_return,
            "runner": runner_state(runner),
            "obs": obs,
            "iteration": iteration,
        }

    # the hand-derived update needs no autograd, nor does the rest of the loop then
    manual = isinstance(update, _ManualGaussianUpdate)
    with loop_mode(runner, env, needs_autograd=not manual):
        while iteration < num_iterations:
            iteration += 1
            if cfg.anneal_lr:  # linear decay to 0 over the run (CleanRL)
                frac = 1.0 - (iteration - 1.0) / num_iterations
                optimizer.lr = frac * cfg.learning_rate

            # ---- rollout (normaliser frozen; everything on device)
            batch, obs = collect_on_policy(runner, agent, obs, cfg.num_steps, gen)
            rewards = batch["rewards"].to(torch.float32)
            if cfg.norm_reward:
                # G_t = r_t + gamma (1 - done_{t-1}) G_{t-1}, restarting at episode ends
                not_done = (~(batch["terminated"] | batch["truncated"])).to(rewards.dtype)
                rows, coefs = rewards.unbind(), (not_done * cfg.gamma).unbind()
                disc = [torch.add(rows[0], disc_return, alpha=cfg.gamma)]
                for reward, coef in zip(rows[1:], coefs):
                    disc.append(torch.addcmul(reward, disc[-1], coef))
                disc_return = disc[-1] * not_done[-1]
                ret_norm.update(torch.stack(disc).reshape(-1))
                scale = ret_norm.std.to(rewards.dtype)
                rewards = (rewards / scale).clamp(-cfg.reward_clip, cfg.reward_clip)
            with torch.no_grad():
                values = ac.value(batch["obs"].flatten(0, 1)).view_as(rewards)
                final_obs = agent.normalize_obs(batch["final_obs"]).flatten(0, 1)
                next_values = ac.value(final_obs).view_as(rewards)
                advantages, returns = gae(
                    rewards,
                    values,
                    next_values,
                    batch["terminated"],
                    batch["truncated"],
                    cfg.gamma,
                    cfg.gae_lambda,
                    check_finite=False,  # no host sync per update
                )
            if agent.obs_normalizer is not None:  # (the agent's statistics stay normal tensors)
                with torch.inference_mode(False):
                    agent.obs_normalizer.update(batch["raw_obs"].reshape(-1, spec.obs_dim))

            # ---- update: epochs of shuffled minibatches
            # the float columns side by side, so that a shuffle is one gather (discrete actions
            # apart)
            actions = batch["actions"].flatten(0, 1)
            per_sample = [batch["log_probs"], advantages, returns, values]
            columns = [
                batch["obs"].flatten(0, 1),
                torch.stack([x.reshape(-1) for x in per_sample], 1),
            ]
            if not spec.discrete:
                columns.insert(1, actions)
            table = torch.cat(columns, 1)
            obs_cols = slice(0, spec.obs_dim)
            act_cols = slice(spec.obs_dim, spec.obs_dim + spec.act_dim)
            # shuffle once per epoch, then cut it into num_minibatches contiguous minibatches; the
            # shuffles of all epochs are gathered at once, or epoch by epoch with an early stop
            epochs_at_once = cfg.update_epochs if cfg.target_kl is None else 1
            k = 0  # minibatch updates so far (rows of the diagnostics buffers)
            while k < n_updates:
                perm = torch.cat(
                    [
                        torch.randperm(cfg.batch_size, generator=gen, device=dev)
                        for _ in range(epochs_at_once)
                    ]
                )
                shuffled = table.index_select(0, perm).unflatten(0, (-1, cfg.minibatch_size))
                act = (
                    actions[perm].view(shuffled.shape[:2])
                    if spec.discrete
                    else shuffled[..., act_cols]
                )
                logp, adv, ret, val = shuffled[..., -len(per_sample) :].unbind(-1)
                if cfg.norm_adv:  # per-minibatch advantage normalisation, all minibatches at once
                    adv = adv.contiguous()
                    std = adv.std(1, keepdim=True)
                    adv = (adv - adv.mean(1, keepdim=True)) / (std + 1e-8)
                parts = [x.unbind() for x in (shuffled[..., obs_cols], act, logp, adv, ret, val)]
                for minibatch in zip(*parts):
                    update(minibatch, diag_rows[k])
                    k += 1
                if cfg.target_kl is not None and bool(_approx_kl(diag[0][k - 1]) > cfg.target_kl):
                    break  # one host sync per epoch
            with torch.no_grad():  # the diagnostics of every minibatch, in one go
                logratio, surrogate, value_term, neg_entropy = (d[:k] for d in diag)
                clipfrac = ((logratio.exp() - 1).abs() > cfg.clip_coef).float().mean()
                stats = torch.stack(
                    [
                        -surrogate.mean(),
                        0.5 * value_term.mean(),
                        -neg_entropy.mean(),
                        _approx_kl(logratio),
                        clipfrac,
                    ]
                )
            losses = dict(
                zip(("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"), stats)
            )
            losses["lr"] = optimizer.lr
            losses["epochs"] = k // cfg.num_minibatches
            if not logger.log(
                iteration * cfg.batch_size,
                iteration,
                losses,
                snapshot,
                last=iteration == num_iterations,
            ):
                break
    return TrainResult(agent, logger.history)
