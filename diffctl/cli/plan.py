"""``diffctl plan``: closed-loop planning in an env with MPC, CEM, iCEM, MPPI or gradient
shooting.

Example::

    diffctl plan --env pendulum --planner mpc --episodes 5 --seed 0 --plot plan.png
    diffctl plan --env pendulum --planner cem --cem.num-samples 200 --cem.iterations 3
    diffctl plan --env mujoco:HalfCheetah-v5 --planner icem --episodes 1 --steps 300
    diffctl plan --env pendulum --planner mppi --model model.pt   # a learned dynamics model
    diffctl plan --env pendulum --reward reward.pt                # a reward from diffctl irl
    diffctl plan --env pendulum --json plan.json                  # the episodes as JSON

The episodes run in parallel (one ``VecEnv`` of ``--episodes`` envs, one batched plan per
control step) from the env's seeded initial states. Prints the return of each episode, their
mean, the solve time per control step and the fraction of converged solves; ``--plot`` saves
the states and actions over time, ``--json`` writes the returns, solve time, convergence and
every episode's states and actions. ``--model`` plans with a learned dynamics model loaded by
``diffctl.models.load_model``, ``--reward`` with a reward written by ``diffctl irl`` (for AIRL,
MPC plans on the whole learned ``f = g + h(s') - h(s)``: stage cost ``-g``, terminal cost
``-h``); the real env still runs the episodes and scores them with its own reward.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from diffctl.bench.common import format_table, write_json
from diffctl.cli._common import (
    Outputs,
    UsageError,
    blame,
    check_input,
    parse,
    raw_value,
    refuse_unused,
    run_command,
)
from diffctl.configs.control import CEMConfig, ICEMConfig, MPCConfig, MPPIConfig, ShootingConfig

if TYPE_CHECKING:  # torch, the envs and the planners load when planning runs, not for --help
    import torch

    from diffctl.envs import Env

__all__ = [
    "PlanCommandConfig",
    "load_learned",
    "load_learned_reward",
    "build_planner",
    "run",
    "main",
    "HELP",
]

HELP = "closed-loop planning in an env: mpc|cem|icem|mppi|shooting, returns and solve times"


@dataclass(frozen=True)
class PlanCommandConfig:
    """Flags of ``diffctl plan`` (each planner's settings are its config's fields)."""

    env: str = "pendulum"
    """registered env name."""
    planner: Literal["mpc", "cem", "icem", "mppi", "shooting"] = "mpc"
    """planner driving the receding-horizon controller."""
    episodes: int = 5
    """episodes, run in parallel."""
    seed: int = 0
    """seed of the initial states and of the sampling planners."""
    steps: int | None = None
    """control steps per episode (default: the env's time limit)."""
    warm_start: bool = True
    """start each solve from the previous plan shifted by one step."""
    plot: Path | None = None
    """save a state/action plot (PNG) here."""
    json: Path | None = None
    """write the episodes here (JSON): returns, solve time, convergence, states, actions."""
    model: Path | None = None
    """plan with a learned dynamics model (a ``diffctl fit`` checkpoint) instead of the env."""
    reward: Path | None = None
    """plan with a learned reward (a ``diffctl irl`` file) instead of the env's reward."""
    mpc: MPCConfig = MPCConfig()
    cem: CEMConfig = CEMConfig()
    icem: ICEMConfig = ICEMConfig()
    mppi: MPPIConfig = MPPIConfig()
    shooting: ShootingConfig = ShootingConfig()
    progress: bool = True
    """show a progress bar over the control steps (with the solve time per step)."""
    overwrite: bool = False
    """replace --plot if it exists (otherwise an existing file is refused)."""
    debug: bool = False
    """print a traceback on failure."""

    def __post_init__(self) -> None:
        if isinstance(self.episodes, bool) or self.episodes < 1:
            raise ValueError(f"episodes: expected a positive int, got {self.episodes!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps: expected a positive int, got {self.steps!r}")


def load_learned(
    path: str | os.PathLike, flag: str, env: Env | None = None
) -> Callable[..., torch.Tensor]:
    """Load a learned model for ``--model`` / ``--reward`` via ``diffctl.models.load_model``.

    Raises ``ValueError`` naming the flag when the learned-model package is unavailable, the
    checkpoint is not a callable model or (given ``env``) was fitted for another env or other
    dims (expected vs found), ``FileNotFoundError`` when the file is missing.
    """
    try:
        from diffctl.models import load_model
    except ImportError as e:
        raise ValueError(
            f"{flag}: learned models need diffctl.models.load_model, which cannot be imported ({e})"
        ) from e
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag}: no such model file {os.fspath(path)!r}")
    try:
        model = load_model(path)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{flag}: {e}") from e
    if not callable(model):
        raise ValueError(f"{flag}: {os.fspath(path)!r} does not hold a callable model")
    source = getattr(model, "meta", {}).get("source", "states")
    if source != "states":
        raise ValueError(
            f"{flag}: {os.fspath(path)!r} was fitted on {source!r}; planning needs a model of "
            "the env's state (fit it on states)"
        )
    if env is not None:
        spec = env.spec
        found_env = getattr(model, "meta", {}).get("env")
        if found_env is not None and found_env != spec.name:
            raise ValueError(
                f"{flag}: {os.fspath(path)!r} is a model of env {found_env!r}, expected "
                f"{spec.name!r} (--env)"
            )
        dims = (getattr(model, "state_dim", None), getattr(model, "act_dim", None))
        if dims != (spec.state_dim, spec.act_dim):
            raise ValueError(
                f"{flag}: {os.fspath(path)!r} has state/action dims {dims}, expected "
                f"({spec.state_dim}, {spec.act_dim}) for {spec.name}"
            )
    return model.eval() if hasattr(model, "eval") else model


def load_learned_reward(path: str | os.PathLike, env: Env, flag: str = "--reward") -> Any:
    """Load a ``diffctl irl`` reward file as an ``AdversarialResult`` (``.reward`` is the reward
    model; ``.shaping`` is AIRL's ``h``, else ``None``) on the env's device and dtype."""
    from diffctl.irl import load_adversarial

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag}: no such reward file {os.fspath(path)!r}")
    try:
        learned = load_adversarial(path)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"{flag}: {e}") from e
    spec = env.spec
    for model in (learned.reward, learned.shaping):
        if model is None:
            continue
        cfg = model.config
        if cfg.env and cfg.env != spec.name:
            raise ValueError(
                f"{flag}: {os.fspath(path)!r} is a reward for env {cfg.env!r}, expected "
                f"{spec.name!r} (--env)"
            )
        if cfg.use_action and cfg.act_dim != spec.act_dim:
            raise ValueError(
                f"{flag}: {os.fspath(path)!r} has action dim {cfg.act_dim}, expected "
                f"{spec.act_dim} for {spec.name}"
            )
        model.to(device=env.device, dtype=env.dtype).eval()
    return learned


def build_planner(
    config: PlanCommandConfig,
    env: Env,
    dynamics: Callable[..., torch.Tensor] | None = None,
    reward: Callable[..., torch.Tensor] | None = None,
    cost: Any = None,
) -> Any:
    """The planner the flags describe, on ``dynamics`` (default: the env) and ``reward``
    (default: the env's reward), within the env's action bounds. ``cost`` (MPC only)
    replaces the cost ``-reward`` (e.g. AIRL's ``planning_cost`` with its terminal ``-h``)."""
    from diffctl.control import CEM, ICEM, MPC, MPPI, FunctionCost, RewardCost, Shooting

    spec = env.spec
    if spec.discrete:
        raise ValueError(f"--env: {spec.name} has discrete actions; the planners need continuous")
    dyn: Any = env if dynamics is None else dynamics
    rew = env.reward if reward is None else reward
    lo, hi = spec.action_bounds(env.device, env.dtype)
    nu = spec.act_dim
    if config.planner == "mpc":
        lo, hi = _mpc_bounds(config.mpc, lo, hi, spec.name)
        if cost is None and reward is None and dynamics is None:
            cost = RewardCost(env)
        elif cost is None:
            cost = FunctionCost(lambda x, u: -rew(x, u, dyn(x, u)))
        return MPC(dyn, cost, config.mpc, nu=nu, u_lower=lo, u_upper=hi)
    if config.planner == "shooting":
        return Shooting(dyn, reward=rew, action_low=lo, action_high=hi, config=config.shooting)
    cfg: Any = getattr(config, config.planner)  # a sampling planner's settings
    elites = getattr(dynamics, "num_elites", 0)
    if elites and cfg.ensemble_size == 0:  # an ensemble: trajectory sampling over its elites
        cfg = dataclasses.replace(cfg, ensemble_size=elites, particles=max(cfg.particles, elites))
    cfg = dataclasses.replace(cfg, seed=config.seed)
    cls = {"cem": CEM, "icem": ICEM, "mppi": MPPI}[config.planner]
    return cls(dyn, reward=rew, action_low=lo, action_high=hi, config=cfg)


def _mpc_bounds(
    mpc: MPCConfig, lo: torch.Tensor, hi: torch.Tensor, env_name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The env's action box narrowed by ``--mpc.u-lower`` / ``--mpc.u-upper`` when given."""
    import torch

    env_lo, env_hi = lo, hi
    for name, bound in (("u_lower", mpc.u_lower), ("u_upper", mpc.u_upper)):
        if bound is None:
            continue
        flag = f"--mpc.{name.replace('_', '-')}"
        b = torch.as_tensor(bound, dtype=lo.dtype, device=lo.device).reshape(-1)
        if b.numel() not in (1, lo.numel()):
            want = "1 value" if lo.numel() == 1 else f"1 or {lo.numel()} values"
            raise UsageError(f"{flag}: expected {want} (one per action), got {b.numel()}")
        b = b.expand_as(env_lo)
        if bool(((b < env_lo) | (b > env_hi)).any()):
            raise UsageError(
                f"{flag}: {bound} lies outside the action bounds of {env_name}: "
                f"[{env_lo.tolist()}, {env_hi.tolist()}]"
            )
        if name == "u_lower":
            lo = b.clone()
        else:
            hi = b.clone()
    if bool((lo > hi).any()):
        raise UsageError(f"--mpc.u-lower: {lo.tolist()} exceeds --mpc.u-upper {hi.tolist()}")
    return lo, hi


def run(config: PlanCommandConfig) -> dict[str, Any]:
    """Run the episodes; returns returns, mean, solve time, convergence rate, trajectories."""
    import torch
    from tqdm.auto import tqdm

    from diffctl.control import MPCPolicy
    from diffctl.envs import VecEnv, make

    with blame("--env", usage=True):
        env = make(config.env)
    if config.planner == "mpc":  # bad bounds are a usage error: say so before loading files
        _mpc_bounds(config.mpc, *env.spec.action_bounds(env.device, env.dtype), env.spec.name)
    dynamics = None if config.model is None else load_learned(config.model, "--model", env)
    reward, cost = None, None
    if config.reward is not None:
        learned = load_learned_reward(config.reward, env)
        reward = learned.reward
        if learned.shaping is not None and config.planner == "mpc":
            cost = learned.planning_cost()
    planner = build_planner(config, env, dynamics, reward, cost)
    policy = MPCPolicy(planner, warm_start=config.warm_start)
    steps = config.steps or env.spec.max_steps
    venv = VecEnv(env, config.episodes, seed=config.seed, max_steps=steps)
    venv.reset(seed=config.seed)
    returns = torch.zeros(config.episodes, dtype=env.dtype)
    states, actions = [venv.state.clone()], []
    t0 = time.perf_counter()
    bar = tqdm(
        total=steps,
        unit="step",
        desc=f"plan {config.planner}",
        disable=not config.progress,
        file=sys.stderr,
        leave=False,
    )
    with bar:
        for _ in range(steps):
            u = policy.act(venv.state, reset=venv.elapsed_steps == 0)
            _, r, _, _, info = venv.step(u)
            returns += r
            actions.append(u.detach().clone())
            states.append(info["final_state"].clone())
            bar.update(1)
    wall = time.perf_counter() - t0
    hist = policy.history
    return {
        "returns": returns.tolist(),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std(unbiased=False)),
        "solve_time": policy.solve_time_per_step(),
        "converged": sum(h["converged"] for h in hist) / max(len(hist), 1),
        "wall_time": wall,
        "states": torch.stack(states),
        "actions": torch.stack(actions),
        "dt": env.spec.dt,
    }


def save_plot(
    path: Path, states: torch.Tensor, actions: torch.Tensor, dt: float, title: str
) -> None:
    """State and action traces (``[T+1, N, nx]``, ``[T, N, nu]``) to a PNG, written atomically."""
    import matplotlib
    import torch

    from diffctl.data import atomic_write

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nx, nu = states.shape[-1], actions.shape[-1]
    fig, axes = plt.subplots(nx + nu, 1, figsize=(7, 1.8 * (nx + nu)), sharex=True)
    t = torch.arange(states.shape[0]) * dt
    for i in range(nx):
        axes[i].plot(t.numpy(), states[..., i].cpu().numpy(), lw=1)
        axes[i].set_ylabel(f"x[{i}]")
    for j in range(nu):
        axes[nx + j].step(t[:-1].numpy(), actions[..., j].cpu().numpy(), lw=1, where="post")
        axes[nx + j].set_ylabel(f"u[{j}]")
    axes[-1].set_xlabel("time [s]")
    axes[0].set_title(title)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def main(argv: list[str]) -> int:
    return run_command("plan", argv, lambda: _main(argv))


def _main(argv: list[str]) -> int:
    config = parse(PlanCommandConfig, argv, prog="diffctl plan", description=HELP)
    refuse_unused(  # the settings of a planner that does not run
        config,
        {
            p: f"with --planner {config.planner}"
            for p in ("mpc", "cem", "icem", "mppi", "shooting")
            if p != config.planner
        },
    )
    outs = Outputs(config.overwrite)
    if config.plot is not None:
        outs.add("--plot", config.plot, raw_value(argv, "--plot"), makedirs=True)
    if config.json is not None:
        outs.add("--json", config.json, raw_value(argv, "--json"), makedirs=True)
    inputs = {"--model": config.model, "--reward": config.reward}
    if config.reward is not None:
        r = config.reward  # AIRL's h beside it (diffctl.irl.shaping_path)
        inputs["--reward (its shaping file)"] = r.with_name(f"{r.stem}.shaping{r.suffix or '.pt'}")
    outs.check(inputs)
    check_input("--model", config.model)
    check_input("--reward", config.reward)
    import torch

    torch.manual_seed(config.seed)
    out = run(config)
    rows = [{"episode": i, "return": r} for i, r in enumerate(out["returns"])]
    print(format_table(rows))
    print(
        f"mean return {out['mean_return']:.2f} +- {out['std_return']:.2f} over "
        f"{len(rows)} episodes | solve time per step {1e3 * out['solve_time']:.2f} ms | "
        f"converged {100 * out['converged']:.1f}% | planner {config.planner}"
    )
    if config.plot is not None:
        save_plot(
            config.plot,
            out["states"],
            out["actions"],
            out["dt"],
            f"{config.env}: {config.planner}, mean return {out['mean_return']:.1f}",
        )
    if config.json is not None:
        write_json(config.json, episodes_json(config, out))
    if config.plot is not None or config.json is not None:
        print(outs.wrote())
    return 0


def episodes_json(config: PlanCommandConfig, out: dict[str, Any]) -> dict[str, Any]:
    """What ``--json`` writes: the run's settings and its episodes (time-major ``states``
    ``[T+1][N][nx]`` and ``actions`` ``[T][N][nu]``)."""
    return {
        "env": config.env,
        "planner": config.planner,
        "seed": config.seed,
        "episodes": config.episodes,
        "model": None if config.model is None else str(config.model),
        "reward": None if config.reward is None else str(config.reward),
        "returns": out["returns"],
        "mean_return": out["mean_return"],
        "std_return": out["std_return"],
        "converged": out["converged"],
        "solve_time": out["solve_time"],
        "wall_time": out["wall_time"],
        "dt": out["dt"],
        "states": out["states"].tolist(),
        "actions": out["actions"].tolist(),
    }
