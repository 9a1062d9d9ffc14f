"""Re-optimising AIRL's learned reward (MPC or PPO) and scoring the result against the expert.

The pipeline of issue #7's acceptance check (``airl_reoptimise``):

1. An expert, iLQR MPC on the env's true reward, runs ``demo_episodes`` episodes from the
   env's random starts (the demonstrations).
2. AIRL (state-only, with the project's PPO as the inner policy learner) learns the reward
   ``f = g(s) + gamma h(s') - h(s)`` from them.
3. The learned reward is re-optimised: by the same iLQR MPC (``reoptimiser="mpc"``,
   ``AdversarialResult.planning_cost``: stage cost ``-g``, terminal cost ``-h``), or by a fresh
   PPO agent trained on ``f`` (``reoptimiser="ppo"``, ``AdversarialResult.shaped_reward``), which
   then acts deterministically (its mean action).
4. Every policy is scored under the **true** reward, on the same new starts, for full episodes.

The score is normalised between the uniform-random policy and the expert (pendulum returns are
negative, so a plain ratio of returns would mean nothing)::

    score = (R - R_random) / (R_expert - R_random)

with ``R`` the mean return of the re-optimised policy, ``R_expert`` that of the expert and
``R_random`` that of uniform-random actions, all from the same start states: 0 is no better
than random actions, 1 is the expert's return (above 1: better than the expert).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from diffctl.agents.ppo import default_config
from diffctl.agents.ppo import train as ppo_train
from diffctl.control import MPC, MPCConfig, MPCPolicy, RewardCost
from diffctl.data import rollout
from diffctl.envs import VecEnv, make

from .adversarial import (
    AdversarialConfig,
    AdversarialResult,
    LearnedRewardRunner,
    adversarial_irl,
)

__all__ = [
    "ReoptimiseConfig",
    "ReoptimiseResult",
    "airl_reoptimise",
    "normalised_score",
    "uniform_random_policy",
]

_REOPTIMISERS = ("mpc", "ppo")


def normalised_score(learned: float, expert: float, random: float) -> float:
    """``(learned - random) / (expert - random)``: 0 at the random policy's return, 1 at the
    expert's (returns measured under the true reward from the same start states)."""
    if not expert > random:
        raise ValueError(
            f"expert: its return {expert} must exceed the random policy's ({random}) "
            "for the score to be defined"
        )
    return (learned - random) / (expert - random)


def uniform_random_policy(spec: Any, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
    """Actions drawn uniformly in the env's action box (continuous actions)."""
    if spec.discrete:
        raise ValueError("spec: uniform_random_policy handles continuous actions")
    low = torch.tensor(spec.action_low)
    high = torch.tensor(spec.action_high)

    def act(obs: Tensor) -> Tensor:
        u = torch.rand(obs.shape[0], spec.act_dim, generator=generator, device=obs.device)
        lo, hi = low.to(obs.device), high.to(obs.device)
        return (lo + (hi - lo) * u).to(obs.dtype)

    return act


@dataclass(frozen=True)
class ReoptimiseConfig:
    """AIRL on an env, its learned reward re-optimised by iLQR MPC, scored against the expert.

    Attributes:
        env: registry name (continuous actions, a smooth true reward for the expert's iLQR).
        demo_episodes: expert episodes given to AIRL.
        episode_steps: steps of every episode (demos and evaluation; 0: the env's time limit).
        airl: AIRL's settings (its ``seed`` is replaced by ``seed``); ``gamma = 1`` makes the
            learned shaping telescope exactly over the planner's undiscounted horizon.
        horizon: MPC horizon of the expert and of the re-optimising planner.
        mpc_iters: iLQR iterations per control step (both planners are cold-started each step).
        action_penalty: ``|u|^2`` weight added to the learned state-only cost (MPC).
        reoptimiser: ``"mpc"`` or ``"ppo"`` (see the module docstring).
        ppo_steps: env steps of the re-optimising PPO (the env's PPO preset otherwise).
        eval_episodes: new random start states the policies are scored from.
        seed: seeds the demos' starts (``seed``), AIRL (``seed``), the evaluation starts
            (``seed + 1``) and the random policy (``seed + 2``).
        device: where everything runs.
    """

    env: str = "pendulum"
    demo_episodes: int = 16
    episode_steps: int = 0
    airl: AdversarialConfig = AdversarialConfig(total_steps=20_480, gamma=1.0)
    horizon: int = 10
    mpc_iters: int = 10
    action_penalty: float = 1e-3
    reoptimiser: str = "mpc"
    ppo_steps: int = 200_000
    eval_episodes: int = 16
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("demo_episodes", "horizon", "mpc_iters", "eval_episodes", "ppo_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.episode_steps < 0:
            raise ValueError(f"episode_steps: expected >= 0, got {self.episode_steps}")
        if self.reoptimiser not in _REOPTIMISERS:
            raise ValueError(
                f"reoptimiser: expected one of {_REOPTIMISERS}, got {self.reoptimiser!r}"
            )
        if self.airl.method != "airl":
            raise ValueError(f"airl: expected method 'airl', got {self.airl.method!r}")


@dataclass
class ReoptimiseResult:
    """Mean true returns over the evaluation starts, the normalised ``score``, each start's
    return (``returns``: ``expert``, ``random``, ``learned``; ``[eval_episodes]``), the AIRL
    result and wall times in seconds (``demos``, ``airl``, ``reoptimise``, ``evaluation``)."""

    expert_return: float
    random_return: float
    learned_return: float
    score: float
    reoptimiser: str
    returns: dict[str, Tensor]
    airl: AdversarialResult
    times: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"true return, mean over {self.returns['learned'].numel()} new starts: "
            f"expert {self.expert_return:.1f}, uniform random {self.random_return:.1f}, "
            f"{self.reoptimiser.upper()} on AIRL's learned reward {self.learned_return:.1f}; "
            "normalised score "
            f"(R - R_random) / (R_expert - R_random) = {self.score:.3f}; wall time "
            + ", ".join(f"{k} {v:.0f} s" for k, v in self.times.items())
        )


def airl_reoptimise(config: ReoptimiseConfig = ReoptimiseConfig()) -> ReoptimiseResult:
    """Run the pipeline of the module docstring and score it."""
    env = make(config.env, device=config.device)
    spec = env.spec
    if spec.discrete:
        raise ValueError(f"env: {config.env!r} has discrete actions; the MPC needs continuous")
    steps = config.episode_steps or spec.max_steps
    dev = torch.device(config.device)
    mpc_cfg = MPCConfig(horizon=config.horizon, max_iter=config.mpc_iters)

    def planner(cost: Any) -> MPCPolicy:
        # cold-started every step: the expert is a fixed function of the state
        return MPCPolicy(MPC(env, cost, mpc_cfg), warm_start=False)

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    demo_gen = torch.Generator(dev).manual_seed(config.seed)
    demos = rollout(
        env, planner(RewardCost(env)), steps, num_envs=config.demo_episodes, generator=demo_gen
    )
    times["demos"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    airl = adversarial_irl(env, demos, dataclasses.replace(config.airl, seed=config.seed))
    times["airl"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if config.reoptimiser == "mpc":
        learned_policy: Any = planner(airl.planning_cost(config.action_penalty))
    else:
        ppo_cfg = dataclasses.replace(default_config(spec.name), total_steps=config.ppo_steps)
        venv = VecEnv(env, ppo_cfg.num_envs, device=dev, seed=config.seed, validate=False)
        runner = LearnedRewardRunner(venv, airl.shaped_reward, record=False)
        agent = ppo_train(runner, ppo_cfg, seed=config.seed).agent

        def learned_policy(obs: Tensor) -> Tensor:
            return agent.act(obs.to(agent.action_dtype), True).to(obs.dtype)

    times["reoptimise"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    x0 = env.initial_state(config.eval_episodes, torch.Generator(dev).manual_seed(config.seed + 1))
    random_policy = uniform_random_policy(spec, torch.Generator(dev).manual_seed(config.seed + 2))
    with torch.no_grad():
        returns = {
            "expert": rollout(env, planner(RewardCost(env)), steps, x0=x0).rewards.sum(0),
            "random": rollout(env, random_policy, steps, x0=x0).rewards.sum(0),
            "learned": rollout(env, learned_policy, steps, x0=x0).rewards.sum(0),
        }
    times["evaluation"] = time.perf_counter() - t0
    means = torch.stack([returns[k].mean() for k in ("expert", "random", "learned")]).tolist()
    expert, random, learned = means
    return ReoptimiseResult(
        expert_return=expert,
        random_return=random,
        learned_return=learned,
        score=normalised_score(learned, expert, random),
        reoptimiser=config.reoptimiser,
        returns=returns,
        airl=airl,
        times=times,
    )
