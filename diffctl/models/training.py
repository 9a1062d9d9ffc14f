"""``fit``: train any ``DynamicsModel`` on logged trajectories, and ``evaluate`` it.

Training splits the log into train/validation sets by whole episodes, fits the model's
normalisers on the training part, then minimises the model's one-step loss (or, for a training
horizon ``k > 1``, the standardised open-loop error of ``k``-step rollouts) with Adam on
minibatches, keeping the parameters with the best validation loss (early stopping).
``LinearModel`` is solved in closed form instead. An ``EnsembleDynamics`` trains all members as
one batched network, each on its own bootstrap resample, then keeps its ``num_elites`` best
members on the validation episodes (the training ones without a validation split) as elites.

Metrics (on the validation episodes, else the training ones):
- ``one_step_mse``: mean squared one-step prediction error in state units;
- ``one_step_nmse``: the same with each state component divided by its standard deviation;
- ``k_step_nrmse``: root-mean-square open-loop error over ``eval_horizon`` steps (all windows
  of that length, up to ``max_eval_windows``) with components divided by their standard
  deviation in the training data (the "normalised ``k``-step open-loop error");
- ``k_step_final_nrmse``: the same at the last step of the window only.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffctl.configs.models import FitConfig

from .base import DynamicsModel
from .dataset import TransitionData, split_episodes, transitions_from
from .ensemble import EnsembleDynamics
from .linear import LinearModel

__all__ = ["FitConfig", "FitResult", "fit", "evaluate", "model_device_dtype", "train_val_split"]


@dataclass
class FitResult:
    """Outcome of ``fit``: the trained ``model`` (best validation epoch), per-epoch ``history``
    (dicts with epoch, train_loss, val_loss, wall_time) and final ``metrics`` (see module doc;
    ensembles add ``member_errors``, each member's standardised one-step MSE on the held-out
    episodes, and ``elites``)."""

    model: DynamicsModel
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def model_device_dtype(model: DynamicsModel) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a model's parameters (or buffers)."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _rollout_windows(
    model: DynamicsModel, data: TransitionData, starts: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Open-loop predictions and targets ``[k, M, nx]`` from window starts ``[M]``."""
    idx = starts[None, :] + torch.arange(k, device=starts.device)[:, None]  # [k, M]
    pred = model.rollout(data.x[starts], data.u[idx])[1:]
    return pred, data.x_next[idx]


def _train_loss(
    model: DynamicsModel, data: TransitionData, idx: Tensor, k: int, scale: Tensor
) -> Tensor:
    if k == 1:
        return model.loss(data.x[idx], data.u[idx], data.x_next[idx])
    pred, target = _rollout_windows(model, data, idx, k)
    return (((pred - target) / scale) ** 2).mean()


@torch.no_grad()
def _val_loss(
    model: DynamicsModel, data: TransitionData, k: int, scale: Tensor, chunk: int = 8192
) -> Tensor:
    starts = data.window_starts(k)
    total = torch.zeros((), device=data.x.device)
    for i in range(0, len(starts), chunk):
        s = starts[i : i + chunk]
        total = total + _train_loss(model, data, s, k, scale) * len(s)
    return total / max(len(starts), 1)


@torch.no_grad()
def evaluate(
    model: DynamicsModel,
    data: Any,
    *,
    eval_horizon: int = 50,
    state_scale: Tensor | None = None,
    max_windows: int = 2048,
    source: Literal["auto", "states", "obs"] = "auto",
) -> dict[str, float]:
    """Prediction metrics of ``model`` on ``data`` (``TransitionData`` or anything ``fit`` takes).

    ``state_scale [nx]`` divides the errors per component (default: the data's own std).
    Returns one_step_mse, one_step_nmse, k_step_nrmse, k_step_final_nrmse, k_step_horizon and
    k_step_windows (see module docstring).
    """
    device, dtype = model_device_dtype(model)
    if not isinstance(data, TransitionData):
        data = transitions_from(
            data,
            state_dim=model.state_dim,
            act_dim=model.act_dim,
            source=source,
            device=device,
            dtype=dtype,
        )
    if state_scale is None:
        state_scale = data.x.std(0, unbiased=False).clamp_min(1e-6)
    err = model(data.x, data.u) - data.x_next
    out = {
        "one_step_mse": (err**2).mean().item(),
        "one_step_nmse": ((err / state_scale) ** 2).mean().item(),
    }
    k = min(eval_horizon, int(data.lengths.max()))
    starts = data.window_starts(k)
    if len(starts) > max_windows:
        starts = starts[torch.linspace(0, len(starts) - 1, max_windows).long().to(starts.device)]
    pred, target = _rollout_windows(model, data, starts, k)
    nerr = (pred - target) / state_scale
    out["k_step_nrmse"] = (nerr**2).mean().sqrt().item()
    out["k_step_final_nrmse"] = (nerr[-1] ** 2).mean().sqrt().item()
    out["k_step_horizon"] = k
    out["k_step_windows"] = len(starts)
    return out


def train_val_split(
    data: TransitionData, config: FitConfig
) -> tuple[TransitionData, TransitionData | None]:
    """The train/validation episodes ``fit`` uses for ``data`` under ``config`` (same seed)."""
    return split_episodes(data, config.val_fraction, torch.Generator().manual_seed(config.seed))


def fit(model: DynamicsModel, dataset: Any, config: FitConfig | None = None) -> FitResult:
    """Fit ``model`` to ``dataset`` (``Trajectory``, mapping of arrays, or dataset path).

    Returns a ``FitResult`` with the trained model (the same object, updated in place), the
    per-epoch history and the metrics. Raises ``ValueError`` for datasets with missing keys,
    mismatching dimensions, non-finite rows or too few episodes for the validation split.
    """
    if not isinstance(model, DynamicsModel):
        raise TypeError(f"model: expected a DynamicsModel, got {type(model).__name__}")
    config = FitConfig() if config is None else config
    if not isinstance(config, FitConfig):
        raise TypeError(f"config: expected a FitConfig, got {type(config).__name__}")
    device, dtype = model_device_dtype(model)
    data = transitions_from(
        dataset,
        state_dim=model.state_dim,
        act_dim=model.act_dim,
        source=config.source,
        device=device,
        dtype=dtype,
    )
    train, val = train_val_split(data, config)
    gen = torch.Generator().manual_seed(config.seed + 1)  # bootstrap and minibatch order
    scale = train.x.std(0, unbiased=False).clamp_min(1e-6)
    model.prepare(train.x, train.u, train.x_next)
    t0 = time.perf_counter()
    history: list[dict[str, Any]] = []
    if isinstance(model, LinearModel):
        model.fit_closed_form(train.x, train.u, train.x_next)
        history.append(
            {
                "epoch": 0,
                "train_loss": _val_loss(model, train, 1, scale).item(),
                "val_loss": None if val is None else _val_loss(model, val, 1, scale).item(),
                "wall_time": time.perf_counter() - t0,
            }
        )
    else:
        history = _gradient_fit(model, train, val, scale, config, gen, device)
    member_errors = None
    if isinstance(model, EnsembleDynamics):  # elites by held-out one-step error (PETS/MBPO)
        held = val if val is not None else train
        member_errors = model.select_elites(held.x, held.u, held.x_next).tolist()
    metrics = evaluate(
        model,
        val if val is not None else train,
        eval_horizon=config.eval_horizon,
        state_scale=scale,
        max_windows=config.max_eval_windows,
    )
    metrics["train_episodes"] = train.num_episodes
    metrics["val_episodes"] = 0 if val is None else val.num_episodes
    metrics["train_transitions"] = len(train)
    if member_errors is not None:
        metrics["member_errors"] = member_errors
        metrics["elites"] = model.elite_idx.tolist()
    return FitResult(model=model, history=history, metrics=metrics)


def _gradient_fit(
    model: DynamicsModel,
    train: TransitionData,
    val: TransitionData | None,
    scale: Tensor,
    config: FitConfig,
    gen: torch.Generator,
    device: torch.device,
) -> list[dict[str, Any]]:
    k = config.train_horizon or model.default_train_horizon
    ensemble = isinstance(model, EnsembleDynamics)
    if ensemble and k != 1:
        raise ValueError(f"train_horizon: EnsembleDynamics trains on one-step NLL, got {k}")
    starts = train.window_starts(k)
    if len(starts) == 0:
        raise ValueError(
            f"dataset: no training episode has {k} consecutive transitions (train_horizon={k}); "
            f"longest has {int(train.lengths.max())}"
        )
    if val is not None and len(val.window_starts(k)) == 0:
        raise ValueError(
            f"dataset: no validation episode has {k} consecutive transitions "
            f"(train_horizon={k}); longest has {int(val.lengths.max())}"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"model: {type(model).__name__} has no trainable parameters")
    opt = torch.optim.Adam(
        params, lr=config.lr or model.default_lr, weight_decay=config.weight_decay
    )
    # PETS: every member trains on its own bootstrap resample of the training windows
    boot = starts[model.bootstrap_indices(len(starts), gen)] if ensemble else None
    n = len(starts)
    bs = min(config.batch_size, n)
    best, best_state, bad_epochs = math.inf, None, 0
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    bar = tqdm(
        range(config.epochs), desc=f"fit {model.kind}", disable=not config.progress, leave=False
    )
    for epoch in bar:
        model.train()
        if ensemble:
            order = torch.argsort(torch.rand(boot.shape, generator=gen).to(device), dim=1)
            epoch_rows = torch.gather(boot, 1, order)
        else:
            epoch_rows = starts[torch.randperm(n, generator=gen).to(device)]
        total = torch.zeros((), device=device)
        batches = 0
        for i in range(0, n - bs + 1, bs):  # full minibatches only
            rows = epoch_rows[..., i : i + bs]
            loss = _train_loss(model, train, rows, k, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            opt.step()
            total = total + loss.detach()
            batches += 1
        model.eval()
        train_loss = (total / batches).item()  # one host sync per epoch
        val_loss = _val_loss(model, val, k, scale).item() if val is not None else None
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "wall_time": time.perf_counter() - t0,
            }
        )
        bar.set_postfix(
            train=f"{train_loss:.4g}", val="-" if val_loss is None else f"{val_loss:.4g}"
        )
        monitored = val_loss if val_loss is not None else train_loss
        if not math.isfinite(monitored):
            raise FloatingPointError(f"fit: loss became {monitored} at epoch {epoch}; lower lr")
        if monitored < best:
            best, bad_epochs = monitored, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if config.patience and bad_epochs >= config.patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
