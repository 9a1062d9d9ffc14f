"""``diffctl collect``: run a policy in an environment and save the trajectories as a dataset.

Example::

    diffctl collect --env pendulum --policy random --episodes 100 --out logs.npz

Episodes run in a ``VecEnv`` of ``--num-envs`` copies (auto-reset); collection stops at the first
step where ``--episodes`` episodes have finished, so with ``num_envs == episodes`` (the default,
up to 1024) every env contributes exactly one episode. The saved ``Trajectory`` is
``[T, num_envs]``; rows after an env's last finished episode (when ``num_envs < episodes``) are
the start of an unfinished one.

Policies come from ``POLICIES``, a registry of name -> factory. A factory is called as
``factory(env, seed=seed, device=device, args=args)`` (``env`` a diffctl ``Env``, ``args`` the
``--policy-args KEY=VALUE`` pairs as a dict of strings) and returns a policy for
``diffctl.data.rollout`` (``policy(obs [N, obs_dim]) -> action``, or ``policy(state)`` with
``needs_state = True``). To add one (``mpc``, ``ppo-checkpoint``, ...), write such a factory in
your package and add a line ``"name": "package.module:factory"`` to ``POLICIES`` (the module is
imported only when that policy is used), or call ``register_policy`` before ``main``.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffctl.cli._common import Outputs, blame, check_device, parse, raw_value, run_command

if TYPE_CHECKING:  # torch and the envs load when a collection runs, not for --help
    import torch
    from torch import Tensor

    from diffctl.data import Policy, Trajectory
    from diffctl.envs import Env

__all__ = ["CollectConfig", "POLICIES", "register_policy", "collect", "main", "HELP"]

HELP = "run a policy in an env and save the trajectories as an .npz dataset"

PolicyFactory = Callable[..., Any]  # (env, *, seed, device, args) -> a diffctl.data.Policy


# ---------------------------------------------------------------------- built-in policies
def random_policy(env: Env, *, seed: int, device: torch.device, args: Mapping[str, str]) -> Policy:
    """Uniform in the action bounds (a unit Gaussian for unbounded components); uniform over
    the action indices for a discrete env. Seeded by ``seed``. Takes no ``args``."""
    import torch

    _no_args("random", args)
    spec = env.spec
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    if spec.discrete:

        def act_discrete(obs: Tensor) -> Tensor:
            return torch.randint(0, spec.num_actions, (obs.shape[0],), generator=g, device=device)

        return act_discrete
    low, high = spec.action_bounds(device, env.dtype)
    bounded = torch.isfinite(low) & torch.isfinite(high)
    low0, high0 = torch.where(bounded, low, 0.0), torch.where(bounded, high, 0.0)

    def act(obs: Tensor) -> Tensor:
        n = obs.shape[0]
        uni = torch.rand(n, spec.act_dim, generator=g, device=device, dtype=env.dtype)
        gauss = torch.randn(n, spec.act_dim, generator=g, device=device, dtype=env.dtype)
        return torch.where(bounded, low0 + (high0 - low0) * uni, gauss)

    return act


def zero_policy(env: Env, *, seed: int, device: torch.device, args: Mapping[str, str]) -> Policy:
    """All-zero actions (action index 0 for a discrete env). Takes no ``args``."""
    import torch

    _no_args("zero", args)
    spec = env.spec

    def act(obs: Tensor) -> Tensor:
        if spec.discrete:
            return torch.zeros(obs.shape[0], dtype=torch.int64, device=device)
        return torch.zeros(obs.shape[0], spec.act_dim, dtype=env.dtype, device=device)

    return act


def _no_args(name: str, args: Mapping[str, str]) -> None:
    if args:
        raise ValueError(f"policy_args: policy {name!r} takes no arguments, got {sorted(args)}")


#: name -> factory or "module:attr" (imported on first use); see the module docstring.
POLICIES: dict[str, PolicyFactory | str] = {
    "random": random_policy,
    "zero": zero_policy,
    "mpc": "diffctl.irl.experts:mpc_expert",
    "ppo-checkpoint": "diffctl.irl.experts:ppo_checkpoint_expert",
}


def register_policy(name: str, factory: PolicyFactory | str, *, overwrite: bool = False) -> None:
    """Add a policy factory (a callable or ``"module:attr"``) under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if name in POLICIES and not overwrite:
        raise ValueError(f"name: policy {name!r} is already registered (pass overwrite=True)")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise TypeError(f"factory: expected a callable or 'module:attr', got {factory!r}")
    POLICIES[name] = factory


def _resolve_policy(name: str) -> PolicyFactory:
    factory = POLICIES[name]
    if callable(factory):
        return factory
    module, attr = factory.split(":")
    return getattr(importlib.import_module(module), attr)


# ---------------------------------------------------------------------- config
@dataclass(frozen=True)
class CollectConfig:
    """Flags of ``diffctl collect``."""

    env: str = "pendulum"
    """registered environment name (see diffctl.envs.make)."""
    policy: str = "random"
    """policy name from the registry (random, zero, ...)."""
    episodes: int = 100
    """number of finished episodes to collect."""
    out: Path = Path("logs.npz")
    """output dataset (.npz), written atomically."""
    seed: int = 0
    """seed of the env's start states and of the policy."""
    num_envs: int | None = None
    """parallel envs (default: min(episodes, 1024))."""
    device: str = "cpu"
    """torch device to run on."""
    policy_args: tuple[str, ...] = ()
    """KEY=VALUE options passed to the policy factory (e.g. a checkpoint path)."""
    progress: bool = True
    """show a progress bar."""
    overwrite: bool = False
    """replace --out if it exists (otherwise an existing file is refused)."""
    debug: bool = False
    """print a traceback on failure."""

    def __post_init__(self) -> None:
        if (
            isinstance(self.episodes, bool)
            or not isinstance(self.episodes, int)
            or (self.episodes < 1)
        ):
            raise ValueError(f"episodes: expected a positive int, got {self.episodes!r}")
        if self.num_envs is not None and (
            isinstance(self.num_envs, bool)
            or not isinstance(self.num_envs, int)
            or self.num_envs < 1
        ):
            raise ValueError(f"num_envs: expected a positive int, got {self.num_envs!r}")
        if self.policy not in POLICIES:
            raise ValueError(
                f"policy: unknown policy {self.policy!r}; known: {', '.join(sorted(POLICIES))}"
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"seed: expected an int, got {type(self.seed).__name__}")
        for item in self.policy_args:
            if "=" not in item or not item.split("=", 1)[0]:
                raise ValueError(f"policy_args: expected KEY=VALUE, got {item!r}")

    def policy_kwargs(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.policy_args)


# ---------------------------------------------------------------------- collection
@dataclass
class CollectResult:
    """What ``collect`` produced: the trajectory, the finished episodes' returns and lengths,
    the metadata saved with it, and the path written."""

    trajectory: Trajectory
    returns: Tensor
    lengths: Tensor
    meta: dict[str, Any]
    path: Path


def collect(config: CollectConfig) -> CollectResult:
    """Run ``config.policy`` in ``config.env`` until ``config.episodes`` episodes have finished,
    save the dataset to ``config.out`` and return what was collected."""
    import torch
    from tqdm.auto import tqdm

    from diffctl.data import Trajectory, rollout, save_dataset, spec_to_dict
    from diffctl.envs import VecEnv, make

    out_dir = Path(config.out).parent
    if not out_dir.is_dir():  # fail before collecting, not after
        raise FileNotFoundError(f"out: directory {str(out_dir)!r} does not exist")
    try:
        device = torch.device(config.device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: cannot interpret {config.device!r} as a torch device") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {config.device!r} requested but CUDA is not available")
    torch.manual_seed(config.seed)  # anything a policy draws from the global generator
    with blame("--env", usage=True):
        env = make(config.env, device=device)
    num_envs = config.num_envs if config.num_envs is not None else min(config.episodes, 1024)
    venv = VecEnv(env, num_envs, device=device, seed=config.seed)
    with blame("--policy-args", usage=True):
        policy = _resolve_policy(config.policy)(
            env, seed=config.seed + 1, device=device, args=config.policy_kwargs()
        )
    # every env finishes at least one episode within max_steps (the time limit), so each chunk
    # makes progress; the finished count is read once per chunk, not per step
    chunk = env.spec.max_steps
    parts: list[Trajectory] = []
    finished = 0
    bar = tqdm(
        total=config.episodes,
        unit="ep",
        desc=f"collect {config.env}",
        disable=not config.progress,
        file=sys.stderr,
    )
    with bar:
        while finished < config.episodes:
            part = rollout(venv, policy, chunk, reset=not parts)
            parts.append(part)
            done = int(part.dones.sum())
            bar.update(min(done, config.episodes - finished))
            finished += done
    traj = Trajectory.cat(parts, dim=0)
    # cut at the first step where the requested number of episodes has finished
    per_step = traj.dones.sum(1).cumsum(0)
    stop = int(torch.searchsorted(per_step, torch.tensor(config.episodes, device=device)))
    traj = traj[: stop + 1]
    returns, lengths = traj.episode_returns()
    meta = {
        "env": config.env,
        "spec": spec_to_dict(env.spec),
        "policy": config.policy,
        "policy_args": config.policy_kwargs(),
        "seed": config.seed,
        "num_envs": num_envs,
        "episodes": int(returns.numel()),
        "transitions": traj.num_steps * traj.batch_size,
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(config).items()
            if k not in ("overwrite", "debug", "progress")  # how it ran, not what it made
        },
    }
    path = save_dataset(config.out, traj, meta)
    return CollectResult(traj, returns, lengths, meta, path)


def main(argv: list[str]) -> int:
    return run_command("collect", argv, lambda: _main(argv))


def _main(argv: list[str]) -> int:
    config = parse(CollectConfig, argv, prog="diffctl collect", description=HELP)
    outputs = Outputs(config.overwrite)
    outputs.add("--out", config.out, raw_value(argv, "--out"))
    check_device("--device", config.device)
    # a file named in --policy-args (e.g. a checkpoint) is an input
    inputs = {
        f"--policy-args {k}": v for k, v in config.policy_kwargs().items() if Path(v).is_file()
    }
    outputs.check(inputs)
    result = collect(config)
    r = result.returns.double()
    std = float(r.std(unbiased=False)) if r.numel() > 1 else 0.0
    mean = float(r.mean()) if r.numel() else math.nan
    print(
        f"collected {result.meta['episodes']} episodes, {result.meta['transitions']} transitions "
        f"from {config.env} with policy {config.policy}: mean return {mean:.2f} +- {std:.2f} "
        f"(mean length {float(result.lengths.double().mean()):.1f}); {outputs.wrote()}"
    )
    return 0
