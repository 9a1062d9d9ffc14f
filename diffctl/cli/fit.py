"""``diffctl fit``: fit a dynamics model to a logged dataset and save it.

Example::

    diffctl collect --env pendulum --episodes 100 --out logs.npz
    diffctl fit --data logs.npz --model mlp --angle-dims 0 --out model.pt

Prints a table of the metrics (one-step MSE, normalised ``k``-step open-loop error, ...) and
writes the model checkpoint (``--out``), ``<out>.json`` (history, metrics, settings) and
``<out>.png`` (open-loop predictions against a held-out episode) beside it. ``--model greybox``
identifies the physical parameters ``--params`` of ``--env`` (default: the dataset's env).
The checkpoint's metadata records the env and which logged signal is the state
(``states``/``obs``), which ``diffctl plan --model`` needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import tyro

from diffctl.bench.common import format_table
from diffctl.cli._common import (
    Outputs,
    UsageError,
    blame,
    parse,
    raw_value,
    refuse_unused,
    run_command,
)
from diffctl.configs.models import FitConfig

if TYPE_CHECKING:  # torch, the envs and the models load when a fit runs, not for --help
    from diffctl.models import DynamicsModel

__all__ = ["FitCommandConfig", "build", "main", "HELP"]

HELP = "fit a dynamics model (linear|mlp|ensemble|greybox) to a dataset and save it"


@dataclass(frozen=True)
class FitCommandConfig:
    """Flags of ``diffctl fit`` (the training flags are ``FitConfig``'s fields)."""

    data: Path
    """dataset (.npz) written by ``diffctl collect`` / ``diffctl.data.save_dataset``."""
    model: Literal["linear", "mlp", "ensemble", "greybox"] = "mlp"
    """model kind."""
    out: Path = Path("model.pt")
    """checkpoint to write (``.json`` and ``.png`` go beside it)."""
    env: str | None = None
    """env of the data (default: the dataset's metadata); needed by greybox."""
    params: tuple[str, ...] = ()
    """greybox: env parameters to identify (default: all)."""
    hidden: tuple[int, ...] = (200, 200)
    """mlp/ensemble: hidden layer widths."""
    num_members: int = 5
    """ensemble: number of members."""
    angle_dims: tuple[int, ...] = ()
    """mlp/ensemble: state components that are angles (fed as sin/cos)."""
    ridge: float = 1e-6
    """linear: ridge penalty on [A B]."""
    plot: bool = True
    """write the prediction plot."""
    overwrite: bool = False
    """replace the outputs if they exist (otherwise an existing file is refused)."""
    debug: bool = False
    """print a traceback on failure."""
    fit: Annotated[FitConfig, tyro.conf.OmitArgPrefixes] = FitConfig()


def build(
    config: FitCommandConfig, state_dim: int, act_dim: int, env_name: str | None
) -> DynamicsModel:
    """The untrained model the flags describe."""
    from diffctl.envs import make
    from diffctl.models import EnsembleDynamics, GreyBoxModel, LinearModel, MLPDynamics

    if config.model == "linear":
        return LinearModel(state_dim, act_dim, ridge=config.ridge)
    if config.model == "mlp":
        return MLPDynamics(state_dim, act_dim, hidden=config.hidden, angle_dims=config.angle_dims)
    if config.model == "ensemble":
        return EnsembleDynamics(
            state_dim,
            act_dim,
            num_members=config.num_members,
            hidden=config.hidden,
            angle_dims=config.angle_dims,
        )
    if env_name is None:
        raise ValueError("--env: greybox needs the env (give --env or a dataset with meta 'env')")
    with blame("--env", usage=True):
        env = make(env_name)
    with blame("--params", usage=True):
        return GreyBoxModel(env, list(config.params) or None)


def _plot(path: Path, model: DynamicsModel, data: Any, horizon: int) -> None:
    """True vs open-loop predicted states of the first held-out episode (Agg backend)."""
    import matplotlib
    import torch

    from diffctl.data import atomic_write

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = int(min(horizon, data.lengths[0]))
    with torch.no_grad():
        pred = model.rollout(data.x[:1], data.u[:k, None])[:, 0].cpu()
    true = torch.cat([data.x[:1], data.x_next[:k]]).cpu()
    nx = true.shape[1]
    fig, axes = plt.subplots(nx, 1, figsize=(7, 2.0 * nx), sharex=True, squeeze=False)
    for i in range(nx):
        ax = axes[i, 0]
        ax.plot(true[:, i], label="logged", color="k")
        ax.plot(pred[:, i], label=f"{model.kind} (open loop)", color="C1", linestyle="--")
        ax.set_ylabel(f"x[{i}]")
    axes[0, 0].legend(loc="best")
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(f"{k}-step open-loop prediction on a held-out episode")
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    from diffctl.data import atomic_write

    text = json.dumps(payload, indent=2, default=str)
    atomic_write(path, lambda f: f.write(text.encode()))


def outputs(config: FitCommandConfig, argv: list[str] | None = None) -> Outputs:
    """The files ``run`` writes: the checkpoint, ``<out>.json`` and (with ``--plot``) the
    ``<out>.png``, all named by ``--out``."""
    outs = Outputs(config.overwrite)
    outs.add("--out", config.out, raw_value(argv or [], "--out"))
    outs.add("--out (its .json)", config.out.with_suffix(".json"))
    if config.plot:
        outs.add("--out (its .png)", config.out.with_suffix(".png"))
    return outs


def run(config: FitCommandConfig) -> dict[str, Any]:
    """Fit, save and plot; returns the metrics."""
    import torch

    from diffctl.data import load_dataset
    from diffctl.envs import make
    from diffctl.models import fit, save_model, train_val_split, transitions_from

    if not config.out.parent.is_dir():
        raise FileNotFoundError(f"out: directory {str(config.out.parent)!r} does not exist")
    with blame("--data"):
        traj, data_meta = load_dataset(config.data)
    env_name = config.env or data_meta.get("env")
    spec = None
    if config.env is not None or config.model == "greybox":
        with blame("--env", usage=True):  # an unknown name is a usage error
            spec = make(env_name).spec if env_name is not None else None
    # a flag that contradicts the file is found on reading it: a runtime error, like a bad file
    if config.env and data_meta.get("env") and config.env != data_meta["env"]:
        raise ValueError(
            f"--env: {config.env!r}, but the dataset {str(config.data)!r} was collected on "
            f"{data_meta['env']!r}"
        )
    source = config.fit.source
    if source == "auto":
        source = "states" if traj.states is not None else "obs"
    x = traj.states if source == "states" else traj.obs
    if x is None:
        raise ValueError(f"--source: the dataset has no {source!r}")
    act_dim = traj.actions.shape[-1] if traj.actions.is_floating_point() else 0
    if act_dim == 0:
        raise ValueError("--data: discrete actions; dynamics models need continuous actions")
    if spec is not None:
        want = (spec.state_dim if source == "states" else spec.obs_dim, spec.act_dim)
        if want != (x.shape[-1], act_dim):
            raise ValueError(
                f"--env: {env_name} has {source} dim {want[0]} and action dim {want[1]}, "
                f"the dataset {str(config.data)!r} {x.shape[-1]} and {act_dim}"
            )
    torch.manual_seed(config.fit.seed)  # the model's initial weights
    try:
        model = build(config, x.shape[-1], act_dim, env_name)
    except (ValueError, TypeError) as e:  # a model flag out of range (--hidden 0, ...)
        raise UsageError(str(e)) from e
    try:
        result = fit(model, traj, config.fit)
    except ValueError as e:  # the data does not suit the settings (too short, too few, ...)
        raise ValueError(f"--data: {e}") from e
    meta = {
        "env": env_name,
        "source": source,
        "dataset": str(config.data),
        "metrics": result.metrics,
        "fit_config": asdict(config.fit),
    }
    save_model(config.out, model, meta)
    _write_json(
        config.out.with_suffix(".json"),
        {"history": result.history, "metrics": result.metrics, "meta": meta},
    )
    if config.plot:
        data = transitions_from(traj, source=source)
        train, val = train_val_split(data, config.fit)
        _plot(
            config.out.with_suffix(".png"),
            model,
            val if val is not None else train,
            config.fit.eval_horizon,
        )
    return result.metrics


def main(argv: list[str]) -> int:
    return run_command("fit", argv, lambda: _main(argv))


def _main(argv: list[str]) -> int:
    config = parse(FitCommandConfig, argv, prog="diffctl fit", description=HELP)
    uses = {  # which model kinds read each model flag
        "params": ("greybox",),
        "num_members": ("ensemble",),
        "ridge": ("linear",),
        "hidden": ("mlp", "ensemble"),
        "angle_dims": ("mlp", "ensemble"),
    }
    refuse_unused(
        config,
        {
            k: f"with --model {config.model} (only {'/'.join(kinds)})"
            for k, kinds in uses.items()
            if config.model not in kinds
        },
    )
    outs = outputs(config, argv)
    outs.check({"--data": config.data})
    if not config.data.is_file():
        what = "is a folder" if config.data.is_dir() else "does not exist"
        raise UsageError(f"--data: {str(config.data)!r} {what}, expected a dataset file")
    metrics = run(config)
    rows = [
        {"metric": k, "value": f"{v:.6g}" if isinstance(v, float) else v}
        for k, v in metrics.items()
    ]
    print(format_table(rows))
    print(outs.wrote())
    return 0
