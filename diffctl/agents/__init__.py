"""Model-free agents on diffctl's batched envs.

One module per algorithm, each with a frozen config dataclass (tuned presets per env in
``PRESETS``; both defined, torch-free, in ``diffctl.configs.agents``), ``make_agent`` and
``train(env, config, seed) -> TrainResult(agent, history)``:

* ``reinforce``, ``a2c``, ``ppo``: on-policy, discrete or continuous actions;
* ``trpo`` / ``npg``: trust-region and natural policy gradient (conjugate gradient on
  Fisher-vector products, ``natural_gradient``);
* ``ddpg``, ``td3``, ``sac``: off-policy, continuous;
* ``dqn``: deep Q-networks with Rainbow's double / dueling / n-step / prioritised-replay
  switches; discrete;
* ``apg``: analytic policy gradient through a differentiable env;
* ``es`` / ``ars``: OpenAI-ES and Augmented Random Search, every perturbed policy of a
  generation in one batched rollout.

Shared pieces, one job each: ``agent`` (``Agent``), ``networks`` (plain MLPs and policy
heads), ``runner`` (the env runner and on-policy rollouts), ``loop`` (``TrainLoop``: resume,
history, checkpoints), ``checkpoint`` (agent files, ``load``) and ``evaluation``
(``evaluate``).

``train(algo_name, env, ...)`` dispatches by name.
"""

from __future__ import annotations

import importlib
from typing import Any

from diffctl.agents.agent import ALGORITHMS, Agent, TrainResult
from diffctl.agents.checkpoint import load
from diffctl.agents.evaluation import evaluate
from diffctl.configs.agents import config_class, default_config

__all__ = [
    "ALGORITHMS",
    "Agent",
    "TrainResult",
    "evaluate",
    "load",
    "train",
    "config_class",
    "default_config",
]


def _module(algo: str) -> Any:
    if algo not in ALGORITHMS:
        raise ValueError(f"algo: unknown algorithm {algo!r}; known: {', '.join(ALGORITHMS)}")
    return importlib.import_module(f"diffctl.agents.{ALGORITHMS[algo]}")


def train(algo: str, env: Any, config: Any = None, seed: int = 0, **kwargs: Any) -> TrainResult:
    """``diffctl.agents.<algo>.train(env, config, seed, **kwargs)``."""
    return _module(algo).train(env, config, seed, **kwargs)
