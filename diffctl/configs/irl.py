"""The reward-learning settings that ``diffctl irl`` builds its flags from, without torch:
``SampledMaxEntConfig``, ``SampledMarginConfig``, ``AdversarialConfig``, ``MPCImitationConfig``
and ``BCConfig``.

Defined here, apart from the methods (``diffctl.irl.maxent``, ``.margin``, ``.adversarial``,
``.mpc_imitation``, ``.bc``, which re-export them, as does ``diffctl.irl``), so that
``diffctl irl --help`` does not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "SampledMaxEntConfig",
    "SampledMarginConfig",
    "AdversarialConfig",
    "MPCImitationConfig",
    "BCConfig",
]


@dataclass(frozen=True)
class SampledMaxEntConfig:
    """Sample-based MaxEnt IRL (guided cost learning without the policy update, Finn 2016).

    Attributes:
        iterations: reward gradient steps.
        lr: Adam step size.
        weight_decay: L2 penalty on the reward parameters.
        num_samples: sampler trajectories per iteration.
        horizon: length of the sampled trajectories (0: the demos' length).
        noise_std: std of the Gaussian exploration added to the sampler's actions (the
            importance weights use this density).
        include_demos: mix the demos into the background samples (Finn 2016, Section 4.1),
            which keeps the importance weights bounded.
        seed: sampling seed.
    """

    iterations: int = 100
    lr: float = 1e-2
    weight_decay: float = 1e-4
    num_samples: int = 64
    horizon: int = 0
    noise_std: float = 0.5
    include_demos: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "num_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr}")
        if not self.noise_std > 0:
            raise ValueError(f"noise_std: expected a positive float, got {self.noise_std}")
        if self.horizon < 0:
            raise ValueError(f"horizon: expected >= 0, got {self.horizon}")


@dataclass(frozen=True)
class SampledMarginConfig:
    """Max-margin IRL on a continuous env with sampled non-expert trajectories.

    Attributes:
        iterations: subgradient steps.
        lr: Adam step size.
        l2: weight of ``||w||^2`` (all reward parameters).
        margin: required return gap between each expert trajectory and the best candidate.
        num_candidates: non-expert trajectories per iteration, from each demo's start state:
            half with uniformly random actions, half with the expert's actions plus Gaussian
            noise of std ``noise_std`` (times the half-range of the action box).
        noise_std: see ``num_candidates``.
        seed: sampling seed.
    """

    iterations: int = 100
    lr: float = 1e-2
    l2: float = 1e-3
    margin: float = 1.0
    num_candidates: int = 8
    noise_std: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "num_candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr}")
        if self.l2 < 0 or self.margin < 0 or self.noise_std < 0:
            raise ValueError("l2, margin, noise_std: expected non-negative floats")


@dataclass(frozen=True)
class AdversarialConfig:
    """GAIL / AIRL.

    Attributes:
        method: ``"airl"`` or ``"gail"``.
        total_steps: PPO env steps (the rest of PPO's settings: the env's preset).
        state_only: AIRL reward ``g(s)`` on states only (else ``g(s, a)``); GAIL's
            discriminator always sees ``(s, a)``.
        disc_updates: discriminator minibatch steps per PPO iteration.
        disc_batch: expert and policy transitions per discriminator step (each).
        disc_lr: Adam step size of the discriminator.
        disc_weight_decay: L2 penalty on the discriminator.
        hidden: hidden sizes of ``g``, ``h`` and GAIL's ``d``.
        activation: activation of those networks (``"tanh"``: smooth, so an iLQR planner
            re-optimising the learned reward gets its curvature; ReLU's Hessian is zero).
        use_observation: feed the env's observation map of the state (e.g. pendulum's
            ``[cos, sin, thdot]``) to the networks.
        gamma: AIRL shaping discount (0: PPO's gamma); 1 makes the shaping telescope exactly
            over a planner's undiscounted horizon (see ``AdversarialResult.planning_cost``).
        seed: seed of PPO and the discriminator.
    """

    method: str = "airl"
    total_steps: int = 300_000
    state_only: bool = True
    disc_updates: int = 50
    disc_batch: int = 512
    disc_lr: float = 1e-3
    disc_weight_decay: float = 1e-4
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    use_observation: bool = True
    gamma: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("airl", "gail"):
            raise ValueError(f"method: expected 'airl' or 'gail', got {self.method!r}")
        for name in ("total_steps", "disc_updates", "disc_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")
        if not self.disc_lr > 0:
            raise ValueError(f"disc_lr: expected a positive float, got {self.disc_lr}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma: expected a value in [0, 1], got {self.gamma}")


@dataclass(frozen=True)
class MPCImitationConfig:
    """Imitation learning through differentiable MPC.

    Attributes:
        iterations: gradient steps.
        lr: Adam step size.
        batch_size: demo states per step (0: all of them).
        horizon: MPC planning horizon.
        mpc_iters: iLQR iterations per solve.
        optimizer: ``"adam"`` (minibatches) or ``"lbfgs"`` (full batch, strong-Wolfe line
            search, ``lbfgs_evals`` loss evaluations per iteration): quicker on small problems.
        lbfgs_evals: loss evaluations per L-BFGS iteration.
        learn_dynamics: names of env parameters to learn as well (e.g. ``("m", "l")``).
        use_observation: the quadratic cost acts on the env's observation (e.g. pendulum's
            ``[cos, sin, thdot]``) rather than the state.
        angle_dims: state components that are angles (wrapped before the quadratic cost).
        action_weight_init: initial weight of the default cost's action term relative to the
            state terms (actions are usually penalised far less than state errors).
        seed: minibatch sampling seed.
    """

    iterations: int = 100
    lr: float = 0.05
    batch_size: int = 64
    horizon: int = 10
    mpc_iters: int = 10
    optimizer: str = "adam"
    lbfgs_evals: int = 10
    learn_dynamics: tuple[str, ...] = ()
    use_observation: bool = False
    angle_dims: tuple[int, ...] = ()
    action_weight_init: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "horizon", "mpc_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")
        if self.batch_size < 0:
            raise ValueError(f"batch_size: expected >= 0, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr}")
        if not self.action_weight_init > 0:
            raise ValueError(f"action_weight_init: expected > 0, got {self.action_weight_init}")
        if self.optimizer not in ("adam", "lbfgs"):
            raise ValueError(f"optimizer: expected 'adam' or 'lbfgs', got {self.optimizer!r}")
        if self.lbfgs_evals < 1:
            raise ValueError(f"lbfgs_evals: expected a positive int, got {self.lbfgs_evals}")


@dataclass(frozen=True)
class BCConfig:
    """Behavioural cloning.

    Attributes:
        epochs: passes over the demonstrations.
        batch_size: minibatch size.
        lr: Adam step size.
        hidden: hidden sizes of the policy MLP.
        seed: initialisation and shuffling seed.
    """

    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    hidden: tuple[int, ...] = (64, 64)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr}")
