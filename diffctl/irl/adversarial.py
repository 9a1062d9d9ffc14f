"""Adversarial imitation with the project's PPO as the inner policy learner.

- GAIL (Ho and Ermon 2016): a discriminator ``D(s, a) = sigmoid(d(s, a))`` separates expert from
  policy transitions; the policy is trained on ``log D - log(1 - D) = d(s, a)``.
- AIRL (Fu, Luo and Levine 2018): ``D = exp(f) / (exp(f) + pi(a|s))`` with
  ``f(s, a, s') = g(s[, a]) + gamma h(s') - h(s)`` (eq. 4); with ``state_only`` the reward
  ``g(s)`` is disentangled from the dynamics and is what gets exported. The policy is trained on
  ``f`` (the shaped reward); ``AdversarialResult.planning_cost`` hands ``g`` and ``h`` to a
  planner that re-optimises ``f`` (``diffctl.irl.reoptimise`` scores that against the expert).

PPO runs on a runner that wraps ``VecEnv`` and replaces the env's reward by the current learned
one; it records the transitions of each PPO iteration, and PPO's per-iteration callback updates
the discriminator on them. AIRL's ``log pi(a|s)`` comes from the sampling policy, which the
callback reads from PPO's per-iteration checkpoint (the agent that collected that iteration's
batch). Episode statistics (``mean_return`` in the history) stay those of the true reward.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from diffctl.agents.checkpoint import load_checkpoint
from diffctl.agents.ppo import PPOConfig, default_config
from diffctl.agents.ppo import train as ppo_train
from diffctl.configs.irl import AdversarialConfig
from diffctl.control import FunctionCost
from diffctl.data import Trajectory
from diffctl.envs import VecEnv

from .demos import check_demos
from .reward import RewardConfig, RewardModel, load_reward

__all__ = [
    "AdversarialConfig",
    "AdversarialResult",
    "LearnedRewardRunner",
    "adversarial_irl",
    "load_adversarial",
    "shaping_path",
]


@dataclass
class AdversarialResult:
    """The exported reward (AIRL: ``g``; GAIL: the discriminator logit), the PPO agent trained
    alongside, the history (PPO records with the discriminator's loss and accuracy), AIRL's
    shaping term ``h`` (``None`` for GAIL) and the shaping discount ``gamma`` it was learned with.
    """

    reward: RewardModel
    agent: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    shaping: RewardModel | None = None
    gamma: float = 1.0

    def shaped_reward(
        self, x: Tensor, u: Tensor, x_next: Tensor, terminated: Tensor | None = None
    ) -> Tensor:
        """AIRL's learned reward ``f = g(s[, a]) + gamma h(s') - h(s)`` (Fu et al. 2018, eq. 4;
        no bootstrap past a terminal state), the reward its PPO was trained on: hand it to a
        ``LearnedRewardRunner`` to re-optimise it with an RL agent."""
        if self.shaping is None:
            raise ValueError("shaped_reward: only AIRL learns a shaping term h (this is GAIL)")
        g, h = self.reward, self.shaping
        r = g(x, u) if g.config.use_action else g(x)
        live = 1.0 if terminated is None else (~terminated).to(r.dtype)
        return r + self.gamma * live * h(x_next) - h(x)

    def planning_cost(self, action_penalty: float = 1e-3) -> FunctionCost:
        """A planner cost that re-optimises AIRL's learned reward ``f = g + gamma h(s') - h(s)``.

        Over a horizon ``H`` the shaping telescopes (potential-based shaping, Ng, Harada and
        Russell 1999): ``sum_{t<H} gamma^t f_t = sum_t gamma^t g(s_t) + gamma^H h(s_H) - h(s_0)``,
        and ``h(s_0)`` does not depend on the plan. So the cost is the stage cost ``-g(x) +
        action_penalty |u|^2`` (the small penalty keeps the box QPs of a state-only reward well
        posed) with the terminal cost ``-h(x_H)``: exact for ``gamma = 1``; for ``gamma < 1`` the
        planner's undiscounted sum is an approximation. ``h`` plays the role of a learned value
        function (Fu et al. 2018, Thm. 5.1: ``h* = V* + const``), which lets a short horizon
        see past the reward's local shape.
        """
        if self.shaping is None:
            raise ValueError("planning_cost: only AIRL learns a shaping term h (this is GAIL)")
        if not action_penalty >= 0:
            raise ValueError(f"action_penalty: expected >= 0, got {action_penalty!r}")
        g, h = self.reward, self.shaping

        def stage(x: Tensor, u: Tensor) -> Tensor:
            r = g(x, u) if g.config.use_action else g(x)
            return -r + action_penalty * u.pow(2).sum(-1)

        return FunctionCost(stage, lambda x: -h(x))

    def save(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        """Write ``reward`` to ``path`` (``RewardModel.save``). AIRL's ``h`` goes to
        ``shaping_path(path)`` first, and ``path``'s meta names that file and ``gamma``, so
        ``load_adversarial`` (and ``diffctl plan --reward``) can plan on the whole learned f."""
        meta = dict(meta or {})
        if self.shaping is not None:
            side = shaping_path(path)
            self.shaping.save(side, meta={"role": "AIRL shaping h", "gamma": self.gamma})
            meta.update(shaping=side.name, gamma=self.gamma)
        self.reward.save(path, meta=meta)


def shaping_path(path: str | os.PathLike) -> Path:
    """Where ``AdversarialResult.save(path)`` writes AIRL's ``h``: ``reward.pt`` ->
    ``reward.shaping.pt``, in the same folder."""
    p = Path(path)
    return p.with_name(f"{p.stem}.shaping{p.suffix or '.pt'}")


def load_adversarial(
    path: str | os.PathLike, *, device: str | torch.device | None = None
) -> AdversarialResult:
    """Read back what ``AdversarialResult.save`` wrote: the reward, and for AIRL its shaping
    term ``h`` and ``gamma`` (``agent`` is ``None``: the inner PPO agent is not saved). A file
    without a shaping entry (GAIL, or any other reward file) loads with ``shaping=None``."""
    g = load_reward(path, device=device)
    name = g.meta.get("shaping")
    if name is None:
        return AdversarialResult(reward=g, agent=None)
    side = Path(path).with_name(str(name))
    if not side.is_file():
        raise FileNotFoundError(
            f"path: {str(path)!r} names the AIRL shaping file {str(side)!r}, which is missing"
        )
    h = load_reward(side, device=device)
    return AdversarialResult(reward=g, agent=None, shaping=h, gamma=float(g.meta["gamma"]))


class LearnedRewardRunner:
    """A ``VecEnv`` whose step returns ``reward_fn(x, u, x_next, terminated)`` instead of the
    env's reward, recording ``(x, u, x_next, terminated)`` of every step in ``buffer`` (cleared
    by the user) when ``record``. Everything else (observations, resets, true-reward episode
    statistics) is the VecEnv's."""

    def __init__(self, venv: VecEnv, reward_fn: Any, record: bool = True) -> None:
        self.venv = venv
        self.reward_fn = reward_fn
        self.record = record
        self.buffer: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        self.spec = venv.spec
        self.num_envs = venv.num_envs
        self.device = venv.device
        self.env = venv.env
        self.max_steps = getattr(venv, "max_steps", venv.spec.max_steps)

    @property
    def state(self) -> Tensor:
        return self.venv.state

    def reset(self, seed: int | None = None) -> Tensor:
        return self.venv.reset(seed=seed)

    def step(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        x = self.venv.state.clone()
        obs, _, term, trunc, info = self.venv.step(u)
        x1 = info["final_state"]
        with torch.no_grad():
            r = self.reward_fn(x, u, x1, term).to(torch.float32)
        if self.record:
            self.buffer.append((x, u.detach(), x1, term))
        return obs, r, term, trunc, info

    def episode_statistics(self, clear: bool = True) -> dict[str, Any]:
        return self.venv.episode_statistics(clear=clear)


def adversarial_irl(
    env: Any,
    demos: Trajectory,
    config: AdversarialConfig = AdversarialConfig(),
    ppo_config: PPOConfig | None = None,
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> AdversarialResult:
    """Run GAIL or AIRL on ``env`` (an ``Env``) from ``demos`` (with true ``states``).

    ``ppo_config``: PPO's settings (default: the env's preset with ``config.total_steps``).
    """
    spec = env.spec
    check_demos(demos, spec)
    if demos.states is None or demos.next_states is None:
        raise ValueError("demos: adversarial IRL needs true states (Trajectory.states)")
    if spec.discrete:
        raise ValueError("env: this implementation handles continuous actions")
    ppo_cfg = ppo_config or dataclasses.replace(
        default_config(spec.name), total_steps=config.total_steps
    )
    gamma = config.gamma or ppo_cfg.gamma
    dev = env.device
    obs_env = spec.name if config.use_observation else None
    airl = config.method == "airl"
    with torch.random.fork_rng(devices=[]):  # seeded init, caller's RNG untouched
        torch.manual_seed(config.seed)
        g_net = RewardModel(
            RewardConfig(
                state_dim=spec.state_dim,
                act_dim=spec.act_dim,
                use_action=not (airl and config.state_only),
                kind="mlp",
                hidden=config.hidden,
                activation=config.activation,
                env=obs_env,
            )
        ).to(dev)
        h_net = (
            RewardModel(
                RewardConfig(
                    state_dim=spec.state_dim,
                    kind="mlp",
                    hidden=config.hidden,
                    activation=config.activation,
                    env=obs_env,
                )
            ).to(dev)
            if airl
            else None
        )
    params = list(g_net.parameters()) + (list(h_net.parameters()) if h_net else [])
    opt = torch.optim.Adam(params, lr=config.disc_lr, weight_decay=config.disc_weight_decay)

    def f(x: Tensor, u: Tensor, x1: Tensor, term: Tensor) -> Tensor:
        if not airl:
            return g_net(x, u)
        # AIRL eq. 4: f = g + gamma h(s') - h(s), no bootstrap past a terminal state
        return g_net(x, u) + gamma * (~term).to(x.dtype) * h_net(x1) - h_net(x)

    flat_states = demos.states.reshape(-1, spec.state_dim)
    flat_next = demos.next_states.reshape(-1, spec.state_dim)
    flat_u = demos.actions.reshape(-1, spec.act_dim)
    flat_term = demos.terminated.reshape(-1)
    n_exp = flat_states.shape[0]
    venv = VecEnv(env, ppo_cfg.num_envs, device=dev, seed=config.seed, validate=False)
    runner = LearnedRewardRunner(venv, f)
    gen = torch.Generator(device=dev).manual_seed(config.seed)
    disc_log: list[dict[str, float]] = []
    tmpdir = tempfile.mkdtemp(prefix="diffctl-airl-")
    ckpt = os.path.join(tmpdir, "ppo.pt")

    def log_pi(agent: Any, x: Tensor, u: Tensor) -> Tensor:
        obs = env._observe(x).to(agent.action_dtype)
        logp, _ = agent.actor.log_prob_entropy(agent.normalize_obs(obs), u.to(agent.action_dtype))
        return logp.to(x.dtype)

    @torch.enable_grad()
    def update_discriminator(record: dict[str, Any]) -> None:
        batch = runner.buffer
        runner.buffer = []
        xs = torch.cat([b[0] for b in batch])
        us = torch.cat([b[1] for b in batch])
        x1s = torch.cat([b[2] for b in batch])
        ts = torch.cat([b[3] for b in batch])
        n_pol = xs.shape[0]
        # the policy that collected this batch: PPO's checkpoint of the previous iteration
        sampler = (
            load_checkpoint(ckpt, map_location=dev)[0] if airl and os.path.exists(ckpt) else None
        )
        stats = torch.zeros(3, device=dev)
        for _ in range(config.disc_updates):
            ie = torch.randint(n_exp, (config.disc_batch,), generator=gen, device=dev)
            ip = torch.randint(n_pol, (config.disc_batch,), generator=gen, device=dev)
            X = torch.cat([flat_states[ie], xs[ip]])
            U = torch.cat([flat_u[ie], us[ip]])
            X1 = torch.cat([flat_next[ie], x1s[ip]])
            T = torch.cat([flat_term[ie], ts[ip]])
            labels = torch.cat(
                [
                    torch.ones(config.disc_batch, device=dev),
                    torch.zeros(config.disc_batch, device=dev),
                ]
            )
            logits = f(X, U, X1, T)
            if sampler is not None:  # AIRL: logit of D = f - log pi(a|s)
                with torch.no_grad():
                    lp = log_pi(sampler, X, U)
                logits = logits - lp
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            acc = ((logits.detach() > 0).float() == labels).float().mean()
            stats += torch.stack([loss.detach(), acc, torch.ones((), device=dev)])
        loss_mean, acc_mean = (stats[:2] / stats[2]).tolist()  # one sync per PPO iteration
        record["disc_loss"] = loss_mean
        record["disc_accuracy"] = acc_mean
        disc_log.append({"disc_loss": loss_mean, "disc_accuracy": acc_mean})
        if callback is not None:  # once per PPO iteration (progress)
            callback(record)

    t0 = time.perf_counter()
    try:
        result = ppo_train(
            runner,
            ppo_cfg,
            seed=config.seed,
            checkpoint=ckpt,
            checkpoint_every=1,
            callback=update_discriminator,
        )
    finally:
        if os.path.exists(ckpt):
            os.remove(ckpt)
        os.rmdir(tmpdir)
    history = [dict(rec, time=time.perf_counter() - t0) for rec in result.history]
    g_net.meta = {"method": config.method, "env": spec.name, "state_only": config.state_only}
    return AdversarialResult(
        reward=g_net, agent=result.agent, history=history, shaping=h_net, gamma=gamma
    )
