"""The learned-dynamics settings, ``FitConfig``, without torch.

Defined here, apart from ``fit`` (``diffctl.models.training``, which re-exports it, as does
``diffctl.models``), so that ``diffctl fit --help`` builds its flags without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FitConfig", "SOURCES"]

#: which logged signal is the state: ``auto`` takes ``states`` when the dataset has them
SOURCES = ("auto", "states", "obs")


@dataclass(frozen=True)
class FitConfig:
    """Training settings of ``fit`` (validated at construction; errors name the field).

    Attributes:
        epochs: maximum passes over the training windows.
        batch_size: windows per minibatch.
        lr: Adam learning rate (None: the model's ``default_lr``).
        weight_decay: L2 penalty (Adam's ``weight_decay``).
        train_horizon: steps of the training loss (None: the model's default; 1 = one-step).
        eval_horizon: ``k`` of the open-loop metric (shortened to the longest window available).
        val_fraction: fraction of episodes held out for validation and early stopping.
        patience: epochs without validation improvement before stopping (0: never stop early).
        max_grad_norm: gradient clipping threshold (None: no clipping).
        max_eval_windows: most ``k``-step windows used by the metric (evenly spaced).
        source: which logged signal is the state: ``states``, ``obs`` or ``auto``.
        seed: seed of the split, bootstrap and minibatch order.
        progress: show a tqdm progress bar.
    """

    epochs: int = 100
    batch_size: int = 256
    lr: float | None = None
    weight_decay: float = 0.0
    train_horizon: int | None = None
    eval_horizon: int = 50
    val_fraction: float = 0.2
    patience: int = 10
    max_grad_norm: float | None = None
    max_eval_windows: int = 2048
    source: Literal["auto", "states", "obs"] = "auto"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_horizon", "max_eval_windows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.train_horizon is not None and (
            isinstance(self.train_horizon, bool)
            or not isinstance(self.train_horizon, int)
            or self.train_horizon < 1
        ):
            raise ValueError(
                f"train_horizon: expected a positive int or None, got {self.train_horizon!r}"
            )
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr: expected > 0 or None, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay: expected >= 0, got {self.weight_decay}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction: expected a value in [0, 1), got {self.val_fraction}")
        if (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, int)
            or self.patience < 0
        ):
            raise ValueError(f"patience: expected an int >= 0, got {self.patience!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm: expected > 0 or None, got {self.max_grad_norm}")
        if self.source not in SOURCES:
            raise ValueError(f"source: expected one of {SOURCES}, got {self.source!r}")
