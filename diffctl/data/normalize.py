"""``RunningNormalizer``: streaming mean/variance for observation and return normalisation.

Observation normalisation: ``norm = RunningNormalizer((obs_dim,), clip=10.0)``;
``norm.update(obs)`` on each batch collected, ``norm.normalize(obs)`` before the networks.

Return (reward-scale) normalisation, as in PPO implementations (Engstrom et al. 2020,
"Implementation matters in deep policy gradients", reward scaling): keep a running discounted
return per env, ``G <- r + gamma * (1 - done) * G``, feed every ``G`` to a
``RunningNormalizer(())`` and divide rewards by ``norm.std`` (not by a centred value: the mean
is kept so rewards keep their sign).

``update`` never synchronises with the host (the batch size is read from the shape), so it can
run inside a training loop on any device. Inputs are not checked for NaN (that would need a sync).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["RunningNormalizer"]


class RunningNormalizer:
    """Running mean and (population) variance of vectors of shape ``shape``.

    Batches are merged with the parallel algorithm of Chan, Golub and LeVeque (1979),
    "Updating formulae and a pairwise algorithm for computing sample variances", so the result
    equals the mean and variance of everything seen, whatever the batch sizes.

    Args:
        shape: shape of one sample (``()`` for scalars such as returns).
        eps: added to the variance before the square root in ``normalize``.
        clip: if given, normalised values are clipped to ``[-clip, clip]``.
        device: where the statistics live (CPU by default).
        dtype: dtype of the statistics (float64 by default, so long runs do not lose count
            precision); ``normalize`` returns the input's dtype.

    Before the first update ``mean = 0``, ``var = 1`` and ``count = 0``, so ``normalize`` is the
    identity (up to ``eps``).
    """

    def __init__(
        self,
        shape: int | Sequence[int] = (),
        eps: float = 1e-8,
        clip: float | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        if not isinstance(shape, Sequence) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape
        ):
            raise ValueError(f"shape: expected a tuple of positive ints, got {shape!r}")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
            raise ValueError(f"eps: expected a non-negative float, got {eps!r}")
        if clip is not None and (
            not isinstance(clip, (int, float)) or isinstance(clip, bool) or clip <= 0
        ):
            raise ValueError(f"clip: expected a positive float or None, got {clip!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        self.shape = tuple(shape)
        self.eps = float(eps)
        self.clip = None if clip is None else float(clip)
        try:
            dev = torch.device("cpu" if device is None else device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device: cannot interpret {device!r} as a torch device") from e
        self.mean = torch.zeros(self.shape, device=dev, dtype=dtype)
        self.var = torch.ones(self.shape, device=dev, dtype=dtype)
        self.count = torch.zeros((), device=dev, dtype=dtype)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def std(self) -> Tensor:
        """``sqrt(var + eps)``, shape ``shape``."""
        return torch.sqrt(self.var + self.eps)

    def _check(self, x: object, name: str = "x") -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating dtype, got {x.dtype}")
        k = len(self.shape)
        if x.dim() < k or tuple(x.shape[x.dim() - k :]) != self.shape:
            raise ValueError(
                f"{name}: expected shape [..., {', '.join(map(str, self.shape))}] "
                f"(trailing dims {self.shape}), got {tuple(x.shape)}"
            )
        if x.device != self.device:
            raise ValueError(f"{name}: tensor is on {x.device}, the normalizer is on {self.device}")
        return x

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge a batch ``x [..., *shape]`` (all leading dims are samples) into the stats."""
        x = self._check(x)
        batch = x.reshape(-1, *self.shape).to(self.mean.dtype)
        n = batch.shape[0]
        if n == 0:
            return
        b_mean = batch.mean(0)
        b_var = batch.var(0, unbiased=False)
        # Chan et al. (1979), pairwise combination of (count, mean, M2)
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta.square() * self.count * n / total
        self.mean = self.mean + delta * (n / total)
        self.var = m2 / total
        self.count = total

    def normalize(self, x: Tensor) -> Tensor:
        """``(x - mean) / sqrt(var + eps)``, clipped to ``[-clip, clip]`` if set; x's dtype."""
        x = self._check(x)
        out = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return out if self.clip is None else out.clamp(-self.clip, self.clip)

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of ``normalize`` (without the clip): ``x * sqrt(var + eps) + mean``."""
        x = self._check(x)
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)

    def to(self, device: str | torch.device) -> RunningNormalizer:
        """Move the statistics to ``device`` (in place); returns ``self``."""
        self.mean, self.var, self.count = (t.to(device) for t in (self.mean, self.var, self.count))
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """``{"mean", "var", "count"}`` (clones)."""
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore from ``state_dict()``; shapes are checked and values moved to this device."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state: expected a mapping, got {type(state).__name__}")
        want = {"mean": self.shape, "var": self.shape, "count": ()}
        for key, shape in want.items():
            if key not in state:
                raise ValueError(f"state: missing key {key!r} (expected {sorted(want)})")
            value = state[key]
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise TypeError(f"state[{key!r}]: expected a floating tensor")
            if tuple(value.shape) != shape:
                raise ValueError(
                    f"state[{key!r}]: expected shape {shape}, got {tuple(value.shape)}"
                )
        dtype = self.mean.dtype
        self.mean, self.var, self.count = (
            state[k].detach().to(device=self.device, dtype=dtype).clone() for k in want
        )

    def __repr__(self) -> str:
        return f"RunningNormalizer(shape={self.shape}, clip={self.clip}, device={self.device})"
