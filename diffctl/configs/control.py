"""The planners' frozen settings: ``MPCConfig``, ``CEMConfig``, ``MPPIConfig``,
``ShootingConfig``, without torch.

Defined here, apart from the planners (``diffctl.control.mpc``, ``.sampling``, ``.shooting``,
which re-export them, as does ``diffctl.control``), so that ``diffctl plan --help`` and
``diffctl irl --help`` build their flags without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "MPCConfig",
    "CEMConfig",
    "MPPIConfig",
    "ICEMConfig",
    "ShootingConfig",
    "Bound",
    "SOLVERS",
    "HESSIAN_MODES",
    "TS_MODES",
    "PROPAGATIONS",
    "MATMUL_DTYPES",
]

Bound = float | tuple[float, ...] | None
SOLVERS = ("auto", "ddp", "condensed")
#: how ``MPC`` takes a cost's Hessian: exact (autograd) or Gauss-Newton (``J'J`` of a residual)
HESSIAN_MODES = ("exact", "gauss-newton")
#: trajectory-sampling modes of ensembles (PETS Sec. 4.2)
TS_MODES = ("tsinf", "ts1")
PROPAGATIONS = ("mean", "sample")
#: lower-precision dtypes an ensemble's matrix products may run in while planning
MATMUL_DTYPES = ("bfloat16", "float16")
_OPTIMIZERS = ("adam", "gd", "lbfgs")
_EXECUTE = ("best", "mean")
_BOUNDS = ("clamp", "tanh")


def _check_int(cfg: Any, name: str, minimum: int = 1) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {v!r}")


def _check_common(cfg: Any) -> None:
    """The fields every sampling config shares (errors name the field)."""
    for name in ("horizon", "num_samples", "iterations", "particles"):
        _check_int(cfg, name)
    _check_int(cfg, "ensemble_size", 0)
    _check_int(cfg, "seed", 0)
    if cfg.ts_mode not in TS_MODES:
        raise ValueError(f"ts_mode: expected one of {TS_MODES}, got {cfg.ts_mode!r}")
    if cfg.propagation not in PROPAGATIONS:
        raise ValueError(f"propagation: expected one of {PROPAGATIONS}, got {cfg.propagation!r}")
    if cfg.matmul_dtype is not None and cfg.matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(
            f"matmul_dtype: expected None or one of {MATMUL_DTYPES}, got {cfg.matmul_dtype!r}"
        )
    if not isinstance(cfg.compile, bool):
        raise ValueError(f"compile: expected a bool, got {cfg.compile!r}")


@dataclass(frozen=True)
class MPCConfig:
    """Settings of ``MPC`` (defaults follow mpc.pytorch where it has one).

    Attributes:
        horizon: planning horizon ``T`` (number of actions).
        u_lower, u_upper: control bounds (scalar or one per control); ``None`` takes the env's
            action bounds when the dynamics is an ``Env``, otherwise unbounded.
        max_iter: iLQR iterations at most.
        u_tol: converged when the full box-projected Newton step moves every control by at most
            this much (with a regularisation of ``Q_uu`` at most 1).
        linesearch_decay: step sizes tried are ``decay ** i``, ``i < max_linesearch_iter``
            (all evaluated in one batched rollout). 0.5 rather than mpc.pytorch's 0.2: far from
            the solution box-DDP's full step often fails and 0.2 then takes a fifth of it (a
            box-constrained LQ problem took 27-38 iterations at 0.2, 20 at 0.5).
        max_linesearch_iter: number of step sizes.
        armijo: accept a step when the actual decrease is at least this fraction of the
            predicted one.
        reg_init, reg_min, reg_max, reg_factor: Levenberg-Marquardt regularisation of ``Q_uu``
            (per example; after consecutive failed steps multiplied by ``reg_factor``,
            ``reg_factor^2``, ... ; divided by ``reg_factor`` after a successful one).
        boxqp_iters: projected-Newton iterations of each box QP with more than three controls
            (up to three it is solved exactly by enumerating the active sets).
        hessian: ``"exact"`` (autograd Hessian of the cost) or ``"gauss-newton"`` (``J'J`` of a
            ``LeastSquaresCost`` residual); dynamics are linearised (iLQR) in both. During the
            iterations a non-quadratic cost's Hessian is projected onto the PSD cone (this keeps
            every step a descent step and leaves the fixed point unchanged); the implicit
            backward pass always uses the exact Hessian of the Lagrangian.
        unroll: differentiate through the iterations instead of implicitly at the fixed point.
        state_lower, state_upper: soft state bounds (``None``: none).
        state_penalty: weight of the soft state-bound penalty ``w * relu(violation)^2``.
        solver: ``"ddp"`` (box-DDP above, any dynamics and cost), ``"condensed"`` (only for
            ``LinearDynamics`` with a ``QuadCost``, no state bounds, ``unroll=False``: the LQ
            problem as one dense box QP in the ``T nu`` controls, solved exactly by an
            interior-point phase that finds the active set and primal-dual active-set
            iterations that make it exact, each phase at most ``max_iter`` iterations;
            ``u_tol`` and the line-search and regularisation fields are not used; gradients
            also reach tensor bounds ``u_lower``/``u_upper`` through the active controls; see
            ``condensed.py``) or ``"auto"`` (condensed where it applies, the problem is small
            enough, ``B (T nu)^3 <= CONDENSED_MAX_WORK`` on the CPU and
            ``B (T nu)^2 <= CONDENSED_MAX_CUDA_ENTRIES`` on CUDA, and the condensed Hessian is
            positive definite; box-DDP otherwise, and box-DDP also when a row of the dense
            solve has not converged, warm-started from the rows that have: badly conditioned
            problems, ``cond(H) > 1e9``, made the active-set phase cycle on a few rows).
            ``PlanResult.info["solver"]`` says which one ran.
    """

    horizon: int = 20
    u_lower: Bound = None
    u_upper: Bound = None
    max_iter: int = 50
    u_tol: float = 1e-4
    linesearch_decay: float = 0.5
    max_linesearch_iter: int = 10
    armijo: float = 1e-4
    reg_init: float = 1e-6
    reg_min: float = 1e-8
    reg_max: float = 1e8
    reg_factor: float = 10.0
    boxqp_iters: int = 3
    hessian: Literal["exact", "gauss-newton"] = "exact"
    unroll: bool = False
    state_lower: Bound = None
    state_upper: Bound = None
    state_penalty: float = 100.0
    solver: Literal["auto", "ddp", "condensed"] = "auto"

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {SOLVERS}, got {self.solver!r}")
        for name in ("horizon", "max_iter", "max_linesearch_iter", "boxqp_iters"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        for name in ("u_tol", "armijo", "reg_min", "reg_init", "reg_max"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
        if not 0 < self.linesearch_decay < 1:
            raise ValueError(f"linesearch_decay: expected in (0, 1), got {self.linesearch_decay}")
        if not self.reg_factor > 1:
            raise ValueError(f"reg_factor: expected > 1, got {self.reg_factor}")
        if not self.state_penalty > 0:
            raise ValueError(f"state_penalty: expected > 0, got {self.state_penalty}")
        if self.hessian not in HESSIAN_MODES:
            raise ValueError(f"hessian: expected one of {HESSIAN_MODES}, got {self.hessian!r}")
        for lo_name, hi_name in (("u_lower", "u_upper"), ("state_lower", "state_upper")):
            lo, hi = getattr(self, lo_name), getattr(self, hi_name)
            for name, b in ((lo_name, lo), (hi_name, hi)):
                vals = b if isinstance(b, tuple) else (b,)
                if b is not None and not all(
                    isinstance(v, int | float) and not math.isnan(v) for v in vals
                ):
                    raise ValueError(f"{name}: expected a number or tuple of numbers, got {b!r}")
            if lo is not None and hi is not None:
                lo_t = lo if isinstance(lo, tuple) else (lo,)
                hi_t = hi if isinstance(hi, tuple) else (hi,)
                if len(lo_t) > 1 and len(hi_t) > 1 and len(lo_t) != len(hi_t):
                    raise ValueError(
                        f"{lo_name}: length {len(lo_t)} != {hi_name} length {len(hi_t)}"
                    )
                if any(a > b for a, b in zip(lo_t * len(hi_t), hi_t * len(lo_t))):
                    raise ValueError(f"{lo_name}: lower bound exceeds {hi_name}")


@dataclass(frozen=True)
class CEMConfig:
    """Settings of ``CEM`` (defaults: PETS, Chua et al. 2018).

    Attributes:
        horizon: planning horizon ``T`` (PETS: 25 on cart-pole, 30 on half-cheetah).
        num_samples: population size per start state (PETS: 500).
        num_elites: elites refitting the distribution (PETS: 50).
        iterations: CEM iterations per plan (PETS: 5).
        alpha: smoothing of mean and variance, ``new = alpha * old + (1 - alpha) * elite``
            (PETS: 0.1).
        epsilon: an example has converged once its largest variance is below this (PETS: 1e-3);
            converged examples stop updating.
        init_std: initial standard deviation as a fraction of ``high - low`` (PETS: 1/4); used
            as absolute std when the planner has no bounds.
        bound_mode: ``"truncate"`` (PETS: shrink the variance so that two standard deviations
            stay inside the box; the distribution then cannot leave a bound its mean sits on) or
            ``"clip"`` (sample with the full variance and clip to the box, which suits
            bang-bang solutions such as the pendulum swing-up).
        particles: rollouts per sampled sequence, scored by their mean cost (PETS used 20 with
            an ensemble of 5; 1 suits deterministic dynamics).
        ensemble_size: 0, or ``E``: trajectory sampling over ``E`` members (module docstring).
        ts_mode: ``"tsinf"`` (a particle keeps its member over the horizon) or ``"ts1"`` (a
            member re-drawn every step); only with ``ensemble_size > 0``.
        propagation: ``"mean"`` (a particle moves to its member's mean prediction) or
            ``"sample"`` (to a sample of its member's Gaussian, as PETS's probabilistic
            ensembles propagate; needs a dynamics with ``step_members``, module docstring).
        matmul_dtype: None (the ensemble's matrix products in the states' dtype) or
            ``"bfloat16"``/``"float16"``: the members' weights are cast to it once per
            rollout and every layer's product takes its inputs in it, while the biases,
            activations, states and costs stay in the states' dtype (the idea of TF32 on
            GPUs: bfloat16 keeps 8 of float32's 24 bits of mantissa, and on CPUs with
            AVX512-BF16 or AMX its ``bmm`` runs about twice as fast; on CPUs without
            bfloat16 instructions it is emulated and slower than float32, by far on
            AVX2-only ones; needs a dynamics with ``elite_weights``, module docstring).
        compile: run the rollout-and-score function through ``torch.compile`` (the first solve
            compiles; module docstring).
        seed: seed of the planner's generator when none is given.
    """

    horizon: int = 25
    num_samples: int = 500
    num_elites: int = 50
    iterations: int = 5
    alpha: float = 0.1
    epsilon: float = 1e-3
    init_std: float = 0.25
    bound_mode: str = "truncate"
    particles: int = 1
    ensemble_size: int = 0
    ts_mode: str = "tsinf"
    propagation: str = "mean"
    matmul_dtype: str | None = None
    compile: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bound_mode not in ("truncate", "clip"):
            raise ValueError(f"bound_mode: expected 'truncate' or 'clip', got {self.bound_mode!r}")
        _check_common(self)
        _check_int(self, "num_elites")
        if self.num_elites > self.num_samples:
            raise ValueError(
                f"num_elites: must be <= num_samples ({self.num_samples}), got {self.num_elites}"
            )
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha: expected a float in [0, 1), got {self.alpha!r}")
        if not self.epsilon >= 0:
            raise ValueError(f"epsilon: expected a float >= 0, got {self.epsilon!r}")
        if not self.init_std > 0:
            raise ValueError(f"init_std: expected a positive float, got {self.init_std!r}")


@dataclass(frozen=True)
class MPPIConfig:
    """Settings of ``MPPI`` (Williams et al. 2017, Alg. 2).

    The paper fixes the algorithm, not these numbers: the defaults are a common starting
    point, and ``temperature`` must suit the cost's scale (the pendulum swing-up test uses
    100 samples, horizon 20, ``temperature = 0.1``, ``noise_std = 0.5``).

    Attributes:
        horizon: planning horizon ``T``.
        num_samples: sampled sequences ``K`` per start state.
        temperature: ``lambda`` of the path-integral weights ``exp(-S / lambda)``.
        noise_std: standard deviation of the exploration noise, as a fraction of ``high - low``
            (absolute when there are no bounds).
        iterations: updates of the nominal sequence per plan (the paper: 1 per control step).
        control_cost: add the paper's ``lambda * u' Sigma^-1 eps`` term to each sample's cost.
        particles, ensemble_size, ts_mode, propagation, matmul_dtype, compile, seed: as in
            ``CEMConfig``.
    """

    horizon: int = 30
    num_samples: int = 1000
    temperature: float = 1.0
    noise_std: float = 0.25
    iterations: int = 1
    control_cost: bool = True
    particles: int = 1
    ensemble_size: int = 0
    ts_mode: str = "tsinf"
    propagation: str = "mean"
    matmul_dtype: str | None = None
    compile: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        _check_common(self)
        if not self.temperature > 0:
            raise ValueError(f"temperature: expected a positive float, got {self.temperature!r}")
        if not self.noise_std > 0:
            raise ValueError(f"noise_std: expected a positive float, got {self.noise_std!r}")


@dataclass(frozen=True)
class ICEMConfig:
    """Settings of ``ICEM`` (defaults: Pinneri et al. 2020's iCEM, as we read the paper).

    Attributes:
        horizon: planning horizon ``T``.
        num_samples: population ``N`` of the first iteration (paper: 300).
        num_elites: elites ``K`` refitting the distribution (paper: 10).
        iterations: iterations per plan (paper: 3; 5 in PETS-sized comparisons).
        population_decay: ``gamma``: iteration ``i`` samples ``max(N * gamma^-i, 2 K)``
            sequences (paper: 1.25; 1 keeps the population).
        noise_beta: colored-noise exponent ``beta`` (0: white noise; the paper tunes it per
            task between about 0.25 and 4; 2 is a common choice for locomotion-like control).
        keep_elites: fraction ``xi`` of the elites carried into the next iteration and, shifted,
            into the next control step (paper: 0.3; 0 turns the memory off).
        shift_elites: reuse the shifted kept elites of the previous solve (only when ``plan``
            gets a warm start, as in receding horizon).
        add_mean: evaluate the distribution's mean in the last iteration (paper: yes).
        execute: ``"best"`` (the best sequence evaluated, the paper's choice) or ``"mean"``.
        alpha: momentum of mean and variance, ``new = alpha * old + (1 - alpha) * elite``
            (paper: 0.1).
        init_std: initial standard deviation as a fraction of ``high - low`` (paper: 0.5 on
            ``[-1, 1]``, i.e. 0.25); absolute when there are no bounds.
        particles, ensemble_size, ts_mode, propagation, matmul_dtype, compile, seed: as in
            ``CEMConfig``.
    """

    horizon: int = 30
    num_samples: int = 300
    num_elites: int = 10
    iterations: int = 3
    population_decay: float = 1.25
    noise_beta: float = 2.0
    keep_elites: float = 0.3
    shift_elites: bool = True
    add_mean: bool = True
    execute: str = "best"
    alpha: float = 0.1
    init_std: float = 0.25
    particles: int = 1
    ensemble_size: int = 0
    ts_mode: str = "tsinf"
    propagation: str = "mean"
    matmul_dtype: str | None = None
    compile: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        _check_common(self)
        _check_int(self, "num_elites")
        if self.num_elites > self.num_samples:
            raise ValueError(
                f"num_elites: must be <= num_samples ({self.num_samples}), got {self.num_elites}"
            )
        if not self.population_decay >= 1:
            raise ValueError(
                f"population_decay: expected a float >= 1, got {self.population_decay!r}"
            )
        if not self.noise_beta >= 0:
            raise ValueError(f"noise_beta: expected a float >= 0, got {self.noise_beta!r}")
        if not 0 <= self.keep_elites <= 1:
            raise ValueError(f"keep_elites: expected a float in [0, 1], got {self.keep_elites!r}")
        if self.execute not in _EXECUTE:
            raise ValueError(f"execute: expected one of {_EXECUTE}, got {self.execute!r}")
        for name in ("shift_elites", "add_mean"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha: expected a float in [0, 1), got {self.alpha!r}")
        if not self.init_std > 0:
            raise ValueError(f"init_std: expected a positive float, got {self.init_std!r}")

    def population(self, i: int) -> int:
        """Freshly sampled sequences of iteration ``i`` (0-based): ``max(N gamma^-i, 2 K)``."""
        return max(math.ceil(self.num_samples * self.population_decay**-i), 2 * self.num_elites)

    @property
    def num_kept(self) -> int:
        """Elites carried over: ``ceil(xi * K)``."""
        return math.ceil(self.keep_elites * self.num_elites)


@dataclass(frozen=True)
class ShootingConfig:
    """Settings of ``Shooting``.

    Attributes:
        horizon: planning horizon ``T``.
        optimizer: ``"adam"`` (Kingma & Ba 2015 with betas 0.9/0.999), ``"gd"`` (plain gradient
            descent) or ``"lbfgs"`` (torch's L-BFGS with strong-Wolfe line search).
        iterations: iteration budget (L-BFGS: its ``max_iter``).
        lr: step size (Adam/gd; L-BFGS: initial step, 1 is the usual choice).
        bounds: ``"clamp"`` (projected steps) or ``"tanh"`` (``u = mid + half * tanh(z)``).
            L-BFGS needs ``"tanh"`` (projection breaks its curvature pairs).
        tol: an example has converged when the infinity norm of its projected gradient
            (of ``z`` with ``tanh``) is at most ``tol``; converged examples stop moving.
        unrolled: record the iterations for autograd (``create_graph=True``): the plan is then
            differentiable w.r.t. ``x0``, the dynamics and the cost parameters. Adam/gd only.
        history_size: L-BFGS memory.
        check_every: iterations between early-exit checks (one host sync each).
    """

    horizon: int = 30
    optimizer: str = "adam"
    iterations: int = 200
    lr: float = 0.1
    bounds: str = "clamp"
    tol: float = 1e-5
    unrolled: bool = False
    history_size: int = 10
    check_every: int = 10

    def __post_init__(self) -> None:
        for name in ("horizon", "iterations", "history_size", "check_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {_OPTIMIZERS}, got {self.optimizer!r}")
        if self.bounds not in _BOUNDS:
            raise ValueError(f"bounds: expected one of {_BOUNDS}, got {self.bounds!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr!r}")
        if not self.tol >= 0:
            raise ValueError(f"tol: expected a float >= 0, got {self.tol!r}")
        if self.optimizer == "lbfgs" and self.unrolled:
            raise ValueError("unrolled: only with optimizer 'adam' or 'gd', not 'lbfgs'")
