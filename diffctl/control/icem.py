"""iCEM: the sample-efficient cross-entropy method (Pinneri et al. 2020).

Pinneri, Sawant, Blaes, Achterhold, Stueckler, Rolinek, Martius, "Sample-efficient
Cross-Entropy Method for Real-time Planning", CoRL 2020. CEM (as in PETS) with:

- colored noise: action sequences are sampled with a power spectrum ``1 / f^beta`` along time
  (``beta = 0`` white, as CEM; larger ``beta`` smoother, more correlated actions), drawn by
  FFT (``colored_noise``) and scaled by the per-step standard deviation;
- a decaying population: iteration ``i`` samples ``max(N * gamma^-i, 2 K)`` sequences;
- memory: a fraction ``xi`` of the elites is kept into the next iteration, and after a control
  step the kept elites of the last solve, shifted by one step, join the first iteration of the
  next solve (with a warm start, i.e. in receding horizon);
- the mean of the distribution is evaluated in the last iteration, and the best sequence seen
  is executed (``execute = "best"``) rather than the mean (``info["mean"]`` holds the mean;
  ``MPCPolicy`` warm-starts the next solve from the shifted ``actions``, i.e. the best
  sequence, where the paper shifts the mean);
- samples outside the action box are clipped (no truncation).

The planner is batched over start states and shares the rollout, trajectory sampling over
ensembles (TS-1 / TS-inf), ``compile`` and ``solve_time`` of ``CEM`` and ``MPPI`` (see
``diffctl.control.sampling``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from diffctl.configs.control import ICEMConfig

from .base import PlanResult
from .cost import Cost
from .sampling import _SamplingPlanner

__all__ = ["ICEMConfig", "ICEM", "colored_noise"]


def colored_noise(
    beta: float,
    size: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Gaussian noise ``[*size]`` with power spectral density ``~ 1 / f^beta`` along the last
    axis, zero mean and unit variance per entry.

    Frequency-domain synthesis (Timmer & Koenig 1995): random Fourier coefficients with
    amplitude ``f^(-beta / 2)`` (frequencies below ``1 / T`` take the amplitude at ``1 / T``),
    then an inverse real FFT, divided by its exact standard deviation.
    """
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not beta >= 0:
        raise ValueError(f"beta: expected a float >= 0, got {beta!r}")
    size = tuple(int(s) for s in size)
    if not size or min(size) < 1:
        raise ValueError(f"size: expected positive sizes, got {size}")
    T = size[-1]
    f = torch.fft.rfftfreq(T, device=device, dtype=dtype).clamp_min(1.0 / T)
    amp = f.pow(-0.5 * beta)  # [F]
    F = amp.shape[0]
    z = torch.randn(2, *size[:-1], F, generator=generator, device=device, dtype=dtype)
    # the zero frequency (and Nyquist for even T) is real; the others appear twice in irfft
    imag_on = torch.ones(F, device=device, dtype=dtype)
    weight = torch.full((F,), 4.0, device=device, dtype=dtype)
    imag_on[0], weight[0] = 0.0, 1.0
    if T % 2 == 0 and F > 1:
        imag_on[-1], weight[-1] = 0.0, 1.0
    spec = torch.complex(z[0] * amp, z[1] * amp * imag_on)
    std = (weight * amp**2).sum().sqrt() / T
    return torch.fft.irfft(spec, n=T) / std


class ICEM(_SamplingPlanner):
    """iCEM planner (see module docstring); arguments as for ``CEM``, with an ``ICEMConfig``.

    The planner remembers the elites of its last solve (for the next control step); ``reset``
    forgets them. ``converged`` is true wherever the plan's cost is finite (a fixed budget).
    ``info``: ``std_max [B]`` (largest standard deviation left), ``mean`` (the distribution's
    mean ``[T, B, nu]``) and ``samples`` (sequences evaluated per start state).
    """

    def __init__(
        self,
        dynamics: Callable[..., Tensor],
        cost: Cost | Callable[[Tensor, Tensor], Tensor] | None = None,
        *,
        reward: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        terminal_cost: Callable[[Tensor], Tensor] | None = None,
        terminated: Callable[[Tensor], Tensor] | None = None,
        action_low: Tensor | float | tuple[float, ...] | None = None,
        action_high: Tensor | float | tuple[float, ...] | None = None,
        config: ICEMConfig | None = None,
        nu: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.config = config or ICEMConfig()
        if not isinstance(self.config, ICEMConfig):
            raise TypeError(f"config: expected an ICEMConfig, got {type(self.config).__name__}")
        super().__init__(
            dynamics,
            cost,
            reward,
            terminal_cost,
            action_low,
            action_high,
            nu,
            generator,
            terminated,
        )
        self._elites: Tensor | None = None

    def reset(self) -> None:
        """Forget the elites of the last solve."""
        self._elites = None

    def _shifted_elites(self, mean: Tensor, warm_start: Tensor | None) -> Tensor | None:
        """The kept elites of the last solve shifted by one step (last action repeated)."""
        cfg, prev = self.config, self._elites
        if warm_start is None or not cfg.shift_elites or cfg.num_kept == 0 or prev is None:
            return None
        if prev.shape[0] != mean.shape[0] or prev.shape[2:] != mean.shape[1:]:
            return None
        if prev.device != mean.device or prev.dtype != mean.dtype:
            return None
        kept = prev[:, : cfg.num_kept]
        return torch.cat([kept[:, :, 1:], kept[:, :, -1:]], dim=2)

    @torch.no_grad()
    def plan(self, x0: Tensor, warm_start: Tensor | None = None) -> PlanResult:
        """Plan actions ``[T, B, nu]`` for start states ``x0 [B, nx]``."""
        t0 = time.perf_counter()
        cfg = self.config
        x0, lo, hi, mean, gen = self._setup(x0, warm_start)
        if x0.shape[0] == 0:
            return self._empty(x0, mean)
        B, T, nu = mean.shape
        K, kept = cfg.num_elites, cfg.num_kept
        if lo is not None:
            var = ((cfg.init_std * (hi - lo)) ** 2).expand(B, T, nu).clone()
        else:
            var = torch.full_like(mean, cfg.init_std**2)
        reuse = self._shifted_elites(mean, warm_start)
        best_cost = torch.full((B,), math.inf, device=x0.device, dtype=x0.dtype)
        best = mean
        elites = mean[:, None]
        evaluated = 0
        for i in range(cfg.iterations):
            noise = colored_noise(
                cfg.noise_beta,
                (B, cfg.population(i), nu, T),
                generator=gen,
                device=x0.device,
                dtype=x0.dtype,
            ).transpose(-1, -2)
            parts = [mean[:, None] + var.sqrt()[:, None] * noise]
            if i == 0 and reuse is not None:
                parts.append(reuse)
            if i > 0 and kept:
                parts.append(elites[:, :kept])
            if i == cfg.iterations - 1 and cfg.add_mean:
                parts.append(mean[:, None])
            samples = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
            if lo is not None:
                samples = torch.minimum(torch.maximum(samples, lo), hi)
            evaluated += samples.shape[1]
            costs = self._score(x0, samples, gen)  # [B, n]
            top = costs.topk(K, dim=1, largest=False)  # sorted, best first
            elites = samples.gather(1, top.indices[:, :, None, None].expand(B, K, T, nu))
            mean = cfg.alpha * mean + (1 - cfg.alpha) * elites.mean(1)
            var = cfg.alpha * var + (1 - cfg.alpha) * elites.var(1, unbiased=False)
            better = top.values[:, 0] < best_cost
            best_cost = torch.where(better, top.values[:, 0], best_cost)
            best = torch.where(better[:, None, None], elites[:, 0], best)
        self._elites = elites
        iters = torch.full((B,), cfg.iterations, dtype=torch.int64, device=x0.device)
        converged = torch.ones(B, dtype=torch.bool, device=x0.device)
        info = {
            "std_max": var.amax(dim=(1, 2)).sqrt(),
            "mean": mean.transpose(0, 1).contiguous(),
            "samples": evaluated,
        }
        plan = best if cfg.execute == "best" else mean
        return self._result(x0, plan, converged, iters, gen, info, t0)
