"""What every model-free agent shares: ``Agent``, ``TrainResult``, ``evaluate``, checkpoints.

An ``Agent`` is an ``nn.Module`` holding every network an algorithm trains (``actor`` plus
critics / target networks in ``nets``) and, optionally, the observation normaliser, together
with the env's ``spec`` and the algorithm's frozen config. ``agent.act(obs, deterministic=...)``
is the policy. ``agent.save(path)`` / ``load(path)`` write and read it atomically.

Training checkpoints are the same file plus a ``train_state`` (optimiser states, RNG states,
env-runner state, counters, history): ``train(..., resume=path)`` continues a run and, on CPU,
reproduces the uninterrupted one bit-for-bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from diffctl.data import Trajectory, atomic_write, content_digest, rollout
from diffctl.envs import Env, EnvSpec, VecEnv, as_device, make

__all__ = [
    "ALGORITHMS",
    "Agent",
    "TrainResult",
    "Callback",
    "evaluate",
    "load",
    "load_checkpoint",
    "save_checkpoint",
    "make_runner",
    "check_action_space",
    "seeded_init",
    "runner_state",
    "restore_runner",
    "IterationLogger",
    "collect_on_policy",
    "setup_runner",
]

# algorithm name -> module under diffctl.agents (exposing CONFIG and make_agent(spec, config))
ALGORITHMS: dict[str, str] = {
    "reinforce": "reinforce",
    "a2c": "a2c",
    "ppo": "ppo",
    "ddpg": "ddpg",
    "td3": "td3",
    "sac": "sac",
    "apg": "apg",
}

CHECKPOINT_FORMAT = "diffctl.agents/2"
#: formats of earlier diffctl versions, which this one refuses with the reason
OLD_FORMATS = {
    "diffctl.agents/1": "diffctl before the agents were rewritten with autograd (other network "
    "and training-state layouts); retrain, or load it with that diffctl (git commit 9eb1716)",
}

#: ``callback(record) -> bool | None``: called once per iteration with the history record;
#: returning ``False`` stops training after that iteration (the checkpoint is written first).
Callback = Callable[[dict[str, Any]], "bool | None"]


# --------------------------------------------------------------------------- agent
class Agent(nn.Module):
    """A trained (or training) policy with the networks that produced it.

    Args:
        algo: algorithm name (a key of ``ALGORITHMS``).
        spec: the env's ``EnvSpec``.
        config: the algorithm's frozen config dataclass.
        actor: policy network with ``mode(obs)`` and, if stochastic, ``sample(obs, generator)``.
        nets: other trained networks (critics, target networks), saved alongside.
        obs_normalizer: a ``RunningNormalizer`` applied to observations before the networks.
        exploration_noise: std (in units of half the action range) of the Gaussian noise a
            deterministic actor adds when ``act(deterministic=False)`` (DDPG / TD3).
    """

    def __init__(
        self,
        algo: str,
        spec: EnvSpec,
        config: Any,
        actor: nn.Module,
        nets: Mapping[str, nn.Module] | None = None,
        obs_normalizer: Any | None = None,
        exploration_noise: float = 0.0,
    ) -> None:
        super().__init__()
        self.algo = algo
        self.spec = spec
        self.config = config
        self.actor = actor
        self.nets = nn.ModuleDict(dict(nets or {}))
        self.obs_normalizer = obs_normalizer
        self.exploration_noise = float(exploration_noise)
        if not spec.discrete:
            low, high = spec.action_bounds()
            self.register_buffer("action_low", low)
            self.register_buffer("action_high", high)

    # the normaliser is not necessarily an nn.Module: keep its state in the agent's state_dict
    def get_extra_state(self) -> Any:
        return None if self.obs_normalizer is None else self.obs_normalizer.state_dict()

    def set_extra_state(self, state: Any) -> None:
        if (state is None) != (self.obs_normalizer is None):
            raise ValueError("agent: checkpoint and agent disagree on observation normalisation")
        if state is not None:
            self.obs_normalizer.load_state_dict(state)

    def to(self, *args: Any, **kwargs: Any) -> Agent:
        """``nn.Module.to``, also moving the observation normaliser to the new device."""
        super().to(*args, **kwargs)
        if self.obs_normalizer is not None:
            self.obs_normalizer.to(self.device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.actor.parameters()).device

    def normalize_obs(self, obs: Tensor) -> Tensor:
        """Observations as the networks see them (normalised when the agent normalises)."""
        return obs if self.obs_normalizer is None else self.obs_normalizer.normalize(obs)

    def clip_action(self, action: Tensor) -> Tensor:
        """Clip a continuous action to the env's box (discrete actions pass through)."""
        if self.spec.discrete:
            return action
        return action.clamp(self.action_low, self.action_high)

    @torch.no_grad()
    def act(
        self,
        obs: Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Action for ``obs [B, obs_dim]`` (or ``[obs_dim]``): ``[B, act_dim]`` or int64 ``[B]``.

        ``deterministic=True`` takes the policy's mode (mean / argmax); otherwise samples with
        ``generator`` (the global RNG when ``None``). Continuous actions are clipped to the box.
        """
        if not isinstance(obs, Tensor):
            raise TypeError(f"obs: expected a torch.Tensor, got {type(obs).__name__}")
        if obs.shape[-1:] != (self.spec.obs_dim,) or obs.dim() not in (1, 2):
            raise ValueError(
                f"obs: expected shape [B, {self.spec.obs_dim}] or [{self.spec.obs_dim}], "
                f"got {tuple(obs.shape)}"
            )
        single = obs.dim() == 1
        o = self.normalize_obs((obs[None] if single else obs).to(self.action_dtype))
        if deterministic:
            a = self.actor.mode(o)
        elif hasattr(self.actor, "sample"):
            a, _ = self.actor.sample(o, generator)
        else:
            a = self.actor.mode(o)
            noise = torch.randn(a.shape, generator=generator, device=a.device, dtype=a.dtype)
            a = a + self.exploration_noise * (self.action_high - self.action_low) / 2 * noise
        a = self.clip_action(a)
        return a[0] if single else a

    @property
    def action_dtype(self) -> torch.dtype:
        return next(self.actor.parameters()).dtype

    def save(self, path: str | os.PathLike) -> None:
        """Write the agent (networks, normaliser, spec, config) atomically to ``path``."""
        save_checkpoint(path, self)

    def extra_repr(self) -> str:
        return f"algo={self.algo!r}, env={self.spec.name!r}"


@dataclass
class TrainResult:
    """What ``train`` returns: the ``agent`` and one history record per iteration
    (``step``, ``iteration``, ``wall_time``, ``mean_return`` of the episodes finished in that
    iteration (NaN if none), ``episodes``, and the algorithm's losses)."""

    agent: Agent
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- env handling
def make_runner(
    env: Any, num_envs: int, seed: int, device: str | torch.device | None = None
) -> Any:
    """A batched runner with the ``VecEnv`` API for ``env``.

    ``env`` may be a registered name, an ``Env`` (wrapped in ``VecEnv(num_envs)``), a ``VecEnv``
    or any runner with the same API (``diffctl.envs.from_gymnasium``); runners are used as
    they are (their own ``num_envs`` and device).
    """
    if isinstance(env, str):
        env = make(env)
    if isinstance(env, Env):
        return VecEnv(env, num_envs, device=device, seed=seed, validate=False)
    for attr in ("reset", "step", "spec", "num_envs"):
        if not hasattr(env, attr):
            raise TypeError(
                "env: expected an env name, an Env, a VecEnv or a runner with the VecEnv API "
                f"(missing {attr!r}), got {type(env).__name__}"
            )
    if device is not None and as_device(device) != as_device(env.device):
        raise ValueError(f"device: the runner is on {env.device}, asked for {device}")
    return env


def loop_mode(runner: Any, env: Any, needs_autograd: bool = False) -> Any:
    """The context a training loop runs in: ``torch.inference_mode`` (no autograd dispatch per
    op, about 8% of a small op) when the loop needs no autograd, ``setup_runner`` built
    ``runner`` from ``env`` (a runner passed in keeps normal tensors) and its env steps as fast
    there (``Env.fast_in_inference_mode``); otherwise a no-op context."""
    fast = getattr(getattr(runner, "env", None), "fast_in_inference_mode", False)
    if needs_autograd or runner is env or not fast:
        return contextlib.nullcontext()
    return torch.inference_mode()


def setup_runner(
    env: Any,
    config: Any,
    config_type: type,
    default_config: Callable[[str], Any],
    seed: int,
    device: str | torch.device | None,
) -> tuple[Any, Any]:
    """``(runner, config)`` for a training run.

    ``config=None`` takes the tuned preset for the env's name. A name or an ``Env`` is run as
    ``VecEnv(config.num_envs)``; a given runner keeps its own number of envs, which then
    replaces ``config.num_envs`` (re-validated, so a batch it no longer divides is refused).
    """
    if config is not None and not isinstance(config, config_type):
        raise TypeError(f"config: expected a {config_type.__name__}, got {type(config).__name__}")
    if isinstance(env, str):
        env = make(env)
    if isinstance(env, Env):
        cfg = config if config is not None else default_config(env.spec.name)
        return make_runner(env, cfg.num_envs, seed, device), cfg
    runner = make_runner(env, 1, seed, device)
    cfg = config if config is not None else default_config(runner.spec.name)
    if cfg.num_envs != runner.num_envs:
        cfg = dataclasses.replace(cfg, num_envs=runner.num_envs)
    return runner, cfg


def check_action_space(spec: EnvSpec, algo: str, *, discrete: bool, continuous: bool) -> None:
    """Refuse an env whose action space the algorithm does not handle."""
    if spec.discrete and not discrete:
        raise ValueError(
            f"env: {algo} needs continuous actions, but {spec.name!r} has "
            f"{spec.num_actions} discrete actions"
        )
    if not spec.discrete and not continuous:
        raise ValueError(
            f"env: {algo} needs discrete actions, but {spec.name!r} has a continuous "
            f"{spec.act_dim}-dimensional action box"
        )


def seeded_init(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """Build networks with the global RNG seeded by ``seed``, leaving the caller's RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def runner_state(runner: Any) -> dict[str, Any] | None:
    """Everything needed to continue ``runner`` exactly (``None`` if it cannot be saved)."""
    if callable(getattr(runner, "state_dict", None)):
        return runner.state_dict()
    return None


def restore_runner(runner: Any, state: dict[str, Any] | None) -> None:
    """Inverse of ``runner_state`` (a runner that cannot be restored keeps its fresh reset)."""
    if state is None:
        return
    if callable(getattr(runner, "load_state_dict", None)):
        runner.load_state_dict(state)


# --------------------------------------------------------------------------- logging loop
class IterationLogger:
    """Once-per-iteration bookkeeping shared by the training loops: the history record
    (one host sync for the episode statistics and the losses), the callback and periodic
    checkpoints. ``log`` returns whether training should go on."""

    def __init__(
        self,
        runner: Any,
        checkpoint: str | os.PathLike | None,
        checkpoint_every: int,
        callback: Callback | None,
        history: list[dict[str, Any]] | None = None,
        wall_offset: float = 0.0,
    ) -> None:
        if checkpoint_every < 0:
            raise ValueError(f"checkpoint_every: expected >= 0, got {checkpoint_every}")
        self.runner = runner
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.callback = callback
        self.history = history if history is not None else []
        self.t0 = time.perf_counter() - wall_offset

    @property
    def wall_time(self) -> float:
        return time.perf_counter() - self.t0

    def log(
        self,
        step: int,
        iteration: int,
        losses: Mapping[str, Tensor | float],
        save: Callable[[], tuple[Agent, dict[str, Any]]],
        last: bool,
    ) -> bool:
        """Append a record; checkpoint every ``checkpoint_every`` iterations and at the end."""
        stats = self.runner.episode_statistics(clear=True)
        # tensors in one stack (a single device-to-host copy), Python numbers as they are
        names = [k for k, v in losses.items() if isinstance(v, Tensor)]
        values = (
            torch.stack([losses[k].detach().float().reshape(()) for k in names]).tolist()
            if names
            else []
        )
        names += [k for k, v in losses.items() if not isinstance(v, Tensor)]
        values += [float(v) for v in losses.values() if not isinstance(v, Tensor)]
        record: dict[str, Any] = {
            "step": int(step),
            "iteration": int(iteration),
            "wall_time": self.wall_time,
            "mean_return": float(stats["mean_return"]),
            "episodes": int(stats["count"]),
            **dict(zip(names, values)),
        }
        self.history.append(record)
        go_on = True
        if self.callback is not None and self.callback(record) is False:
            go_on = False
        periodic = self.checkpoint_every > 0 and iteration % self.checkpoint_every == 0
        if self.checkpoint is not None and (periodic or last or not go_on):
            agent, train_state = save()
            train_state["history"] = self.history
            train_state["wall_time"] = self.wall_time
            save_checkpoint(self.checkpoint, agent, train_state)
        return go_on


# --------------------------------------------------------------------------- on-policy data
def collect_on_policy(
    runner: Any, agent: Agent, num_steps: int, generator: torch.Generator
) -> Trajectory:
    """Run the stochastic policy for ``num_steps`` steps of every env of ``runner``, from where
    it stands (``diffctl.data.rollout`` with a policy that normalises, samples and clips).

    The observation normaliser is frozen during the rollout (the caller updates it), so the
    normalised observations kept are exactly what the policy saw. Everything stays on the
    runner's device (no host synchronisation).

    Returns a time-major ``Trajectory`` (``T = num_steps``, ``B = runner.num_envs``): ``obs``
    and ``next_obs`` raw (``next_obs`` before any auto-reset), ``actions`` as stepped (clipped
    to the box), and ``extras``: ``policy_obs [T, B, obs_dim]`` (normalised), ``sample``
    (the unclipped actions drawn) and ``log_prob [T, B]`` (of ``sample``).
    """

    def policy(obs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        o = agent.normalize_obs(obs)
        action, log_prob = agent.actor.sample(o, generator)
        return agent.clip_action(action), {"policy_obs": o, "sample": action, "log_prob": log_prob}

    return rollout(runner, policy, num_steps)


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    agent: Agent,
    env: Any,
    episodes: int = 10,
    *,
    seed: int = 0,
    deterministic: bool = True,
) -> dict[str, Any]:
    """Mean, std and list of the undiscounted returns of ``episodes`` episodes.

    ``env`` is a name or an ``Env`` (run as ``VecEnv(env, episodes)``, one episode per copy),
    or a ``VecEnv`` / runner (reset with ``seed``, ``ceil(episodes / N)`` episodes per copy).
    """
    if not isinstance(agent, Agent):
        raise TypeError(f"agent: expected a diffctl Agent, got {type(agent).__name__}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes: expected a positive int, got {episodes!r}")
    runner = make_runner(
        env, episodes, seed, device=None if not isinstance(env, (str, Env)) else agent.device
    )
    if runner.spec.discrete != agent.spec.discrete or (
        runner.spec.obs_dim != agent.spec.obs_dim or runner.spec.act_dim != agent.spec.act_dim
    ):
        raise ValueError(
            f"env: {runner.spec.name!r} does not match the agent's env {agent.spec.name!r} "
            "(observation/action spaces differ)"
        )
    n = runner.num_envs
    per_env = math.ceil(episodes / n)
    max_steps = int(getattr(runner, "max_steps", runner.spec.max_steps))
    gen = torch.Generator(device=runner.device)
    gen.manual_seed(seed)
    obs = runner.reset(seed=seed)
    dtype = agent.action_dtype
    returns = torch.full((per_env, n), float("nan"), dtype=torch.float64, device=runner.device)
    count = torch.zeros(n, dtype=torch.int64, device=runner.device)
    running = torch.zeros(n, dtype=torch.float64, device=runner.device)
    cols = torch.arange(n, device=runner.device)
    for _ in range(per_env * max_steps):
        action = agent.act(obs.to(agent.device, dtype), deterministic, gen).to(runner.device)
        obs, reward, term, trunc, _ = runner.step(action)
        running = running + reward.to(torch.float64)
        done = term | trunc
        write = done & (count < per_env)
        rows = count.clamp(max=per_env - 1)
        returns[rows, cols] = torch.where(write, running, returns[rows, cols])
        count = count + write.to(torch.int64)
        running = torch.where(done, torch.zeros_like(running), running)
    flat = returns.T.reshape(-1)
    flat = flat[~torch.isnan(flat)][:episodes].tolist()
    runner.episode_statistics(clear=True)
    mean = sum(flat) / len(flat)
    std = (sum((r - mean) ** 2 for r in flat) / len(flat)) ** 0.5
    return {"mean_return": mean, "std_return": std, "returns": flat}


# --------------------------------------------------------------------------- files
def _config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"config: unknown fields {sorted(unknown)} for {cls.__name__}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _spec_to_dict(spec: EnvSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "extra"}


def save_checkpoint(
    path: str | os.PathLike, agent: Agent, train_state: dict[str, Any] | None = None
) -> None:
    """Write ``agent`` (and, for resuming, ``train_state``) to ``path`` atomically."""
    if not isinstance(agent, Agent):
        raise TypeError(f"agent: expected a diffctl Agent, got {type(agent).__name__}")
    path = os.fspath(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "algo": agent.algo,
        "spec": _spec_to_dict(agent.spec),
        "config": _config_to_dict(agent.config),
        "agent": agent.state_dict(),
        "train_state": train_state,
    }
    payload["checksum"] = content_digest(payload)  # checked on loading: flipped bytes refused
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device | None = None
) -> tuple[Agent, dict[str, Any] | None]:
    """Read a file written by ``save_checkpoint``: ``(agent, train_state or None)``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no agent file at {path!r}")
    try:
        payload = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"path: {path!r} is not a readable diffctl agent file ({e})") from e
    found = payload.get("format") if isinstance(payload, dict) else None
    if found in OLD_FORMATS:
        raise ValueError(
            f"path: {path!r} was written in agent file format {found}, by {OLD_FORMATS[found]}; "
            f"this diffctl reads {CHECKPOINT_FORMAT}"
        )
    if found != CHECKPOINT_FORMAT:
        raise ValueError(f"path: {path!r} is not a diffctl agent file ({CHECKPOINT_FORMAT})")
    for key in ("algo", "spec", "config", "agent", "train_state"):
        if key not in payload:
            raise ValueError(f"path: {path!r} lacks the {key!r} entry")
    if "checksum" in payload:  # files from before the checksum have none
        content = {k: v for k, v in payload.items() if k != "checksum"}
        if content_digest(content) != payload["checksum"]:
            raise ValueError(
                f"path: {path!r} fails its checksum: its content does not match the checksum "
                "saved with it (corrupt file)"
            )
    algo = payload["algo"]
    if algo not in ALGORITHMS:
        raise ValueError(f"path: unknown algorithm {algo!r} in {path!r}")
    module = importlib.import_module(f"diffctl.agents.{ALGORITHMS[algo]}")
    try:
        spec_d = dict(payload["spec"])
        spec_d["action_low"] = tuple(spec_d["action_low"])
        spec_d["action_high"] = tuple(spec_d["action_high"])
        spec = EnvSpec(**spec_d)
        config = _config_from_dict(module.CONFIG, payload["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"path: {path!r} holds an invalid spec or config ({e})") from e
    agent = module.make_agent(spec, config, seed=0)
    try:
        agent.load_state_dict(payload["agent"])
    except RuntimeError as e:
        raise ValueError(f"path: network weights in {path!r} do not fit the config ({e})") from e
    if map_location is not None:
        agent.to(map_location)
    return agent, payload["train_state"]


def load(path: str | os.PathLike, map_location: str | torch.device | None = None) -> Agent:
    """Load an agent saved with ``agent.save`` or a training checkpoint."""
    return load_checkpoint(path, map_location)[0]
