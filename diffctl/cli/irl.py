"""``diffctl irl``: learn a reward from expert demonstrations and save it.

Example::

    diffctl collect --env pendulum --policy mpc --episodes 8 --out expert.npz
    diffctl irl --demos expert.npz --method airl --out reward.pt

``--method``: ``maxent`` (sample-based MaxEnt IRL with a behavioural-cloning sampler),
``margin`` (max-margin over sampled non-expert trajectories), ``gail`` / ``airl`` (adversarial,
PPO inner loop), ``mpc`` (cost learning through differentiable MPC). Each method's settings are
the fields of its config dataclass, given as ``--maxent.iterations 50`` etc. The reward file is
read back with ``diffctl.irl.load_reward(path)``; ``airl`` also writes its shaping term ``h`` to
``reward.shaping.pt`` beside it (``diffctl.irl.load_adversarial`` reads both), and
``diffctl plan --reward reward.pt`` plans on the whole learned reward.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from diffctl.cli._common import (
    Outputs,
    blame,
    check_device,
    check_input,
    parse,
    raw_value,
    refuse_unused,
    run_command,
)
from diffctl.configs.irl import (
    AdversarialConfig,
    BCConfig,
    MPCImitationConfig,
    SampledMarginConfig,
    SampledMaxEntConfig,
)

if TYPE_CHECKING:  # torch and the methods load when a reward is learned, not for --help
    from diffctl.irl import RewardModel

HELP = "learn a reward from expert demos (maxent|margin|gail|airl|mpc) and save it"


@dataclass(frozen=True)
class IRLCommandConfig:
    """Flags of ``diffctl irl``."""

    demos: Path
    """expert dataset (.npz from ``diffctl collect``), with true states."""
    method: Literal["maxent", "margin", "gail", "airl", "mpc"] = "maxent"
    """reward learning method."""
    out: Path = Path("reward.pt")
    """output reward file (written atomically)."""
    env: str | None = None
    """environment name (default: the dataset's)."""
    device: str = "cpu"
    """torch device."""
    seed: int = 0
    """seed of the reward initialisation."""
    hidden: tuple[int, ...] = (64, 64)
    """hidden sizes of the MLP reward (maxent, margin)."""
    maxent: SampledMaxEntConfig = field(default_factory=SampledMaxEntConfig)
    margin: SampledMarginConfig = field(default_factory=SampledMarginConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    mpc: MPCImitationConfig = field(default_factory=MPCImitationConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    """behavioural cloning of the sampler policy used by maxent."""
    progress: bool = True
    """show a progress bar (one update per iteration)."""
    overwrite: bool = False
    """replace the outputs if they exist (otherwise an existing file is refused)."""
    debug: bool = False
    """print a traceback on failure."""


def run(config: IRLCommandConfig) -> tuple[RewardModel, list[dict], dict]:
    """Learn the reward; returns ``(reward, history, meta)`` and writes ``config.out``."""
    import torch
    from tqdm.auto import tqdm

    from diffctl.data import load_dataset
    from diffctl.envs import make
    from diffctl.irl import check_demos

    out_dir = Path(config.out).parent
    if not out_dir.is_dir():
        raise FileNotFoundError(f"out: directory {str(out_dir)!r} does not exist")
    with blame("--demos"):
        demos, meta = load_dataset(config.demos, device=config.device)
    env_name = config.env or meta.get("env")
    if not env_name:
        raise ValueError("--env: the dataset names no env; pass --env")
    with blame("--env", usage=True):
        env = make(env_name, device=config.device)
    if config.env and meta.get("env") and config.env != meta["env"]:
        raise ValueError(
            f"--env: {config.env!r}, but the demos {str(config.demos)!r} were collected on "
            f"{meta['env']!r}"
        )
    with blame("--demos"):
        check_demos(demos, env.spec)
    if demos.states is None:
        raise ValueError(
            "--demos: the dataset has no true states (collect it with diffctl collect)"
        )
    demos = demos.to(dtype=env.dtype)
    torch.manual_seed(config.seed)
    method = config.method
    total = {
        "maxent": config.maxent.iterations,
        "margin": config.margin.iterations,
        "mpc": config.mpc.iterations,
    }.get(method)  # gail/airl: one update per PPO iteration
    bar = tqdm(
        total=total,
        unit="it",
        desc=f"irl {method}",
        disable=not config.progress,
        file=sys.stderr,
        leave=False,
    )

    def progress(record: dict) -> None:
        bar.update(1)
        shown = {k: v for k, v in record.items() if k in _SHOWN and isinstance(v, float)}
        bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)

    with bar:
        reward, history, settings, saver = _learn(config, env, env_name, demos, progress)
    file_meta = {
        "method": method,
        "env": env_name,
        "demos": str(config.demos),
        "settings": settings,
    }
    (saver or reward.save)(config.out, meta=file_meta)
    return reward, history, file_meta


#: history fields the progress bar shows
_SHOWN = ("loss", "hinge", "disc_loss", "disc_accuracy", "mean_return")


def _learn(
    config: IRLCommandConfig, env: Any, env_name: str, demos: Any, progress: Callable[[dict], None]
) -> tuple[RewardModel, list[dict], dict, Any]:
    """Run the chosen method; returns ``(reward, history, settings, saver or None)``."""
    from diffctl.irl import (
        RewardConfig,
        RewardModel,
        adversarial_irl,
        behavioural_cloning,
        max_margin_irl_sampled,
        maxent_irl_sampled,
        mpc_imitation,
    )

    spec = env.spec
    method = config.method
    saver = None  # AIRL saves h beside g, so re-planning uses the whole learned f
    if method in ("maxent", "margin"):
        reward = RewardModel(
            RewardConfig(
                state_dim=spec.state_dim,
                act_dim=spec.act_dim,
                use_action=not spec.discrete,
                num_actions=spec.num_actions if spec.discrete else 0,
                kind="mlp",
                hidden=config.hidden,
                env=env_name,
            )
        ).to(device=config.device, dtype=env.dtype)
        if method == "maxent":
            bc = behavioural_cloning(demos, spec, config.bc).policy
            res = maxent_irl_sampled(
                env, demos, reward, lambda x: bc(env.observe(x)), config.maxent, callback=progress
            )
        else:
            res = max_margin_irl_sampled(env, demos, reward, config.margin, callback=progress)
        reward, history = res.reward, res.history
        settings = asdict(config.maxent if method == "maxent" else config.margin)
    elif method in ("gail", "airl"):
        adv = AdversarialConfig(**{**asdict(config.adversarial), "method": method})
        res_adv = adversarial_irl(env, demos, adv, callback=progress)
        reward, history, settings = res_adv.reward, res_adv.history, asdict(adv)
        saver = res_adv.save
    else:
        res_mpc = mpc_imitation(env, demos, config.mpc, callback=progress)
        reward, history, settings = res_mpc.reward, res_mpc.history, asdict(config.mpc)
        settings["learned_dynamics"] = {k: v.tolist() for k, v in res_mpc.params.items()}
    return reward, history, settings, saver


def main(argv: list[str]) -> int:
    return run_command("irl", argv, lambda: _main(argv))


def _main(argv: list[str]) -> int:
    config = parse(IRLCommandConfig, argv, prog="diffctl irl", description=HELP)
    reads = {  # which methods read each settings flag
        "maxent": ("maxent",),
        "bc": ("maxent",),
        "hidden": ("maxent", "margin"),
        "margin": ("margin",),
        "adversarial": ("gail", "airl"),
        "mpc": ("mpc",),
    }
    refuse_unused(
        config,
        {
            k: f"with --method {config.method} (only {'/'.join(m)})"
            for k, m in reads.items()
            if config.method not in m
        },
    )
    outs = Outputs(config.overwrite)
    outs.add("--out", config.out, raw_value(argv, "--out"))
    if config.method == "airl":  # its shaping term h beside it (diffctl.irl.shaping_path)
        o = config.out
        outs.add("--out (its shaping file)", o.with_name(f"{o.stem}.shaping{o.suffix or '.pt'}"))
    outs.check({"--demos": config.demos})
    check_input("--demos", config.demos)
    check_device("--device", config.device)
    _, history, meta = run(config)
    last = {
        k: v for k, v in (history[-1] if history else {}).items() if isinstance(v, (int, float))
    }
    print(f"diffctl irl: {meta['method']} on {meta['env']}: last record {last}; {outs.wrote()}")
    return 0
