"""The model-free agents' frozen config dataclasses and their tuned presets per env.

They live here, apart from the algorithms (``diffctl.agents.<algo>``, which re-export them), and
import no torch: ``diffctl train ALGO --help`` builds its flags from them without loading torch.
``config_class(algo)`` and ``default_config(algo, env_name)`` look them up by algorithm name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ReinforceConfig",
    "A2CConfig",
    "PPOConfig",
    "DDPGConfig",
    "TD3Config",
    "SACConfig",
    "DQNConfig",
    "APGConfig",
    "TRPOConfig",
    "NPGConfig",
    "ESConfig",
    "ARSConfig",
    "REINFORCE_PRESETS",
    "A2C_PRESETS",
    "PPO_PRESETS",
    "DDPG_PRESETS",
    "TD3_PRESETS",
    "SAC_PRESETS",
    "DQN_PRESETS",
    "APG_PRESETS",
    "TRPO_PRESETS",
    "NPG_PRESETS",
    "ES_PRESETS",
    "ARS_PRESETS",
    "CONFIGS",
    "config_class",
    "default_config",
    "validate_off_policy_config",
]


def validate_off_policy_config(cfg: Any) -> None:
    """Checks shared by the off-policy configs (each names the bad field)."""
    for name in (
        "total_steps",
        "num_envs",
        "buffer_size",
        "batch_size",
        "updates_per_step",
        "log_interval",
    ):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if (
        isinstance(cfg.learning_starts, bool)
        or not isinstance(cfg.learning_starts, int)
        or cfg.learning_starts < 0
    ):
        raise ValueError(f"learning_starts: expected an int >= 0, got {cfg.learning_starts!r}")
    for name in ("actor_lr", "critic_lr"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name}: expected > 0, got {getattr(cfg, name)!r}")
    if not 0.0 <= cfg.gamma <= 1.0:
        raise ValueError(f"gamma: expected a value in [0, 1], got {cfg.gamma!r}")
    if not 0.0 < cfg.tau <= 1.0:
        raise ValueError(f"tau: expected a value in (0, 1], got {cfg.tau!r}")
    if cfg.total_steps < cfg.num_envs:
        raise ValueError(f"total_steps: {cfg.total_steps} is less than num_envs {cfg.num_envs}")
    if not cfg.hidden or any(h < 1 for h in cfg.hidden):
        raise ValueError(f"hidden: expected positive layer sizes, got {cfg.hidden!r}")


# -------------------------------------------------------------------- reinforce
@dataclass(frozen=True)
class ReinforceConfig:
    """REINFORCE hyperparameters; defaults tuned here for ``cartpole`` (the textbook setting of
    Sutton & Barto 2018 Sec. 13.4 with Adam, a 2x64 tanh MLP and advantage normalisation)."""

    total_steps: int = 200_000
    num_envs: int = 16
    num_steps: int = 512
    """steps per env per iteration"""
    learning_rate: float = 3e-3
    gamma: float = 0.99
    baseline: bool = True
    """learn V_psi and subtract it from the rewards-to-go"""
    baseline_lr: float = 3e-3
    baseline_epochs: int = 5
    """full-batch gradient steps on the baseline per iteration"""
    norm_adv: bool = True
    max_grad_norm: float = 1.0
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0

    def __post_init__(self) -> None:
        for name in ("total_steps", "num_envs", "num_steps", "baseline_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        for name in ("learning_rate", "baseline_lr", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma: expected a value in [0, 1], got {self.gamma!r}")
        if self.total_steps < self.num_envs * self.num_steps:
            raise ValueError(
                f"total_steps: {self.total_steps} is less than one batch "
                f"({self.num_envs * self.num_steps})"
            )
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer sizes, got {self.hidden!r}")


REINFORCE_PRESETS: dict[str, ReinforceConfig] = {"cartpole": ReinforceConfig()}


# -------------------------------------------------------------------- a2c
@dataclass(frozen=True)
class A2CConfig:
    """A2C hyperparameters. Defaults: Stable-Baselines3's A2C defaults as rl-zoo runs them on
    CartPole-v1 (8 envs x 5 steps, RMSprop, gamma 0.99, GAE lambda 1, vf_coef 0.5, grad-norm
    0.5, no entropy bonus, no advantage normalisation) with lr 1e-3 instead of 7e-4 decayed
    linearly to 0, which reaches and keeps 500 in 250k steps instead of 500k (seeds 0 and 1)."""

    total_steps: int = 250_000
    num_envs: int = 8
    num_steps: int = 5
    learning_rate: float = 1e-3
    optimizer: str = "rmsprop"
    """rmsprop (alpha 0.99, eps 1e-5, as A3C and SB3) or adam"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the run"""
    gamma: float = 0.99
    gae_lambda: float = 1.0
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    norm_adv: bool = False
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0

    def __post_init__(self) -> None:
        for name in ("total_steps", "num_envs", "num_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer: expected 'rmsprop' or 'adam', got {self.optimizer!r}")
        for name in ("learning_rate", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {getattr(self, name)!r}")
        for name in ("ent_coef", "vf_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)!r}")
        if self.total_steps < self.num_envs * self.num_steps:
            raise ValueError(
                f"total_steps: {self.total_steps} is less than one batch "
                f"({self.num_envs * self.num_steps})"
            )
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer sizes, got {self.hidden!r}")


A2C_PRESETS: dict[str, A2CConfig] = {"cartpole": A2CConfig()}


# -------------------------------------------------------------------- ppo
@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters.

    The defaults are CleanRL's ``ppo_continuous_action.py`` defaults (themselves those of the
    PPO paper's MuJoCo setting) with more parallel envs (16 x 128 steps), lr 1e-3 and
    gamma 0.95 (rl-zoo's Pendulum-v1 values), tuned here to pass -200 on ``pendulum`` in 200k
    steps. The same 2048-step batch from more, shorter rollouts learns worse on ``pendulum``
    (32 x 64: -240 and -191, 64 x 32: -300 and -333 after 200k steps for seeds 0 and 1, vs
    -188 and -194 at 16 x 128), so the preset keeps 16 x 128 although a batched env steps 64
    envs as fast as 16. Fewer epochs learn worse too (5 epochs: seed 2 misses -200 in 200k
    steps; 5 epochs at 32 x 64: all of seeds 0-2 miss it). ``PRESETS`` holds the tuned
    per-env values; ``cartpole`` follows CleanRL's ``ppo.py`` CartPole settings with more envs
    and a larger learning rate.
    """

    total_steps: int = 200_000
    """env steps over all envs"""
    num_envs: int = 16
    num_steps: int = 128
    """rollout length per env per iteration (batch = num_envs * num_steps)"""
    learning_rate: float = 1e-3
    anneal_lr: bool = True
    gamma: float = 0.95
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 10
    norm_adv: bool = True
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    """stop the epochs of an iteration once the approximate KL exceeds this (None: never)"""
    norm_obs: bool = True
    norm_reward: bool = True
    obs_clip: float = 10.0
    reward_clip: float = 10.0
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    compile: bool = False
    """compile the minibatch loss and its backward with ``torch.compile``: about a third off
    each minibatch update on CPU, but a cold compile takes tens of seconds and even a warm
    cache about 2 s per process, more than it saves in runs of this size"""

    def __post_init__(self) -> None:
        for name in ("total_steps", "num_envs", "num_steps", "num_minibatches", "update_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        for name in ("learning_rate", "clip_coef", "max_grad_norm", "obs_clip", "reward_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {getattr(self, name)!r}")
        for name in ("ent_coef", "vf_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)!r}")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"target_kl: expected > 0 or None, got {self.target_kl!r}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"num_minibatches: {self.num_minibatches} does not divide the batch "
                f"num_envs * num_steps = {self.batch_size}"
            )
        if self.total_steps < self.batch_size:
            raise ValueError(
                f"total_steps: {self.total_steps} is less than one batch ({self.batch_size})"
            )
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer sizes, got {self.hidden!r}")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches


#: Tuned configurations per env (the CLI starts from these).
PPO_PRESETS: dict[str, PPOConfig] = {
    "pendulum": PPOConfig(),
    # CleanRL ppo.py CartPole-v1 (lr 2.5e-4, 4 epochs, 4 minibatches, ent 0.01, gamma 0.99)
    # with 16 envs x 64 steps and a larger learning rate: solved in ~100k steps.
    "cartpole": PPOConfig(
        total_steps=150_000,
        num_envs=16,
        num_steps=64,
        learning_rate=2.5e-3,
        gamma=0.99,
        gae_lambda=0.95,
        num_minibatches=4,
        update_epochs=4,
        ent_coef=0.01,
        norm_obs=False,
        norm_reward=False,
    ),
}


# -------------------------------------------------------------------- ddpg
@dataclass(frozen=True)
class DDPGConfig:
    """DDPG hyperparameters: CleanRL's defaults (lr 3e-4, batch 256, tau 0.005, exploration
    noise 0.1, policy delay 2) with 2x64 networks, learning rates 1e-3 and 1000 random warm-up
    steps, tuned here for ``pendulum``."""

    total_steps: int = 10_000
    num_envs: int = 1
    buffer_size: int = 100_000
    batch_size: int = 256
    learning_starts: int = 1_000
    updates_per_step: int = 1
    """gradient steps per vector-env step"""
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    exploration_noise: float = 0.1
    policy_frequency: int = 2
    hidden: tuple[int, ...] = (64, 64)
    log_interval: int = 1_000
    """env steps between history records"""
    compile: bool = False
    """run the losses through ``torch.compile``; off by default: on the CPU at these network
    sizes a compiled update measured no faster than the eager one (matrix products and autograd
    dominate) and the first run compiles for tens of seconds (inductor's disk cache: seconds)"""

    def __post_init__(self) -> None:
        validate_off_policy_config(self)
        if not self.exploration_noise >= 0:
            raise ValueError(f"exploration_noise: expected >= 0, got {self.exploration_noise!r}")
        if (
            isinstance(self.policy_frequency, bool)
            or not isinstance(self.policy_frequency, int)
            or self.policy_frequency < 1
        ):
            raise ValueError(
                f"policy_frequency: expected a positive int, got {self.policy_frequency!r}"
            )


DDPG_PRESETS: dict[str, DDPGConfig] = {"pendulum": DDPGConfig()}


# -------------------------------------------------------------------- td3
@dataclass(frozen=True)
class TD3Config:
    """TD3 hyperparameters: CleanRL's / the paper's defaults (lr 3e-4, batch 256, tau 0.005,
    policy noise 0.2 clipped at 0.5, exploration noise 0.1, policy delay 2) with 2x64 networks
    and 1000 random warm-up steps, tuned here for ``pendulum``."""

    total_steps: int = 10_000
    num_envs: int = 1
    buffer_size: int = 100_000
    batch_size: int = 256
    learning_starts: int = 1_000
    updates_per_step: int = 1
    """gradient steps per vector-env step"""
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    exploration_noise: float = 0.1
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_frequency: int = 2
    hidden: tuple[int, ...] = (64, 64)
    log_interval: int = 1_000
    """env steps between history records"""
    compile: bool = False
    """run the losses through ``torch.compile``; off by default: on the CPU at these network
    sizes a compiled update measured no faster than the eager one (matrix products and autograd
    dominate) and the first run compiles for tens of seconds (inductor's disk cache: seconds)"""

    def __post_init__(self) -> None:
        validate_off_policy_config(self)
        for name in ("exploration_noise", "policy_noise", "noise_clip"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)!r}")
        if (
            isinstance(self.policy_frequency, bool)
            or not isinstance(self.policy_frequency, int)
            or self.policy_frequency < 1
        ):
            raise ValueError(
                f"policy_frequency: expected a positive int, got {self.policy_frequency!r}"
            )


TD3_PRESETS: dict[str, TD3Config] = {"pendulum": TD3Config()}


# -------------------------------------------------------------------- sac
@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters: CleanRL's defaults (actor lr 3e-4, critic lr 1e-3, batch 256,
    tau 0.005, gamma 0.99, policy and alpha updated every 2nd step, autotuned alpha) with
    smaller 2x64 networks and 1000 random warm-up steps, tuned here to pass -200 on
    ``pendulum`` (deterministic evaluation) within 8k env steps. ``PRESETS`` holds the per-env
    values (``mujoco:HalfCheetah-v5``: rl-baselines3-zoo's SAC for MuJoCo, 2x256 networks)."""

    total_steps: int = 8_000
    num_envs: int = 1
    buffer_size: int = 100_000
    batch_size: int = 256
    learning_starts: int = 1_000
    updates_per_step: int = 1
    """gradient steps per vector-env step"""
    actor_lr: float = 3e-4
    critic_lr: float = 1e-3
    alpha_lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    policy_frequency: int = 2
    autotune: bool = True
    alpha: float = 0.2
    """entropy temperature (the initial one when autotuned)"""
    hidden: tuple[int, ...] = (64, 64)
    critic_layer_norm: bool = False
    """LayerNorm in every hidden layer of the critics and their targets: ``|Q|`` is then bounded
    by the weights whatever the input, which keeps the values from running away when most
    updates bootstrap from off-distribution (e.g. model-generated) states (Ball et al. 2023,
    "Efficient Online RL with Offline Data", RLPD; Hiraoka et al. 2022, DroQ)"""
    log_interval: int = 1_000
    """env steps between history records"""
    compile: bool = False
    """run the losses through ``torch.compile``; off by default: on the CPU at these network
    sizes a compiled update measured no faster than the eager one (matrix products and autograd
    dominate) and the first run compiles for tens of seconds (inductor's disk cache: seconds)"""

    def __post_init__(self) -> None:
        validate_off_policy_config(self)
        if not isinstance(self.critic_layer_norm, bool):
            raise TypeError(
                f"critic_layer_norm: expected a bool, got {type(self.critic_layer_norm).__name__}"
            )
        if not self.alpha_lr > 0:
            raise ValueError(f"alpha_lr: expected > 0, got {self.alpha_lr!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha: expected > 0, got {self.alpha!r}")
        if (
            isinstance(self.policy_frequency, bool)
            or not isinstance(self.policy_frequency, int)
            or self.policy_frequency < 1
        ):
            raise ValueError(
                f"policy_frequency: expected a positive int, got {self.policy_frequency!r}"
            )


SAC_PRESETS: dict[str, SACConfig] = {
    "pendulum": SACConfig(),
    # rl-baselines3-zoo's SAC for the MuJoCo tasks (hyperparams/sac.yml, ``HalfCheetah-v3:
    # &mujoco-defaults``: n_timesteps 1e6, learning_starts 10000, everything else SB3's SAC
    # defaults: lr 3e-4 for actor, critics and temperature, buffer 1e6, batch 256, tau 0.005,
    # gamma 0.99, one gradient step per env step, 2x256 ReLU networks, autotuned temperature
    # starting at 1.0 (``ent_coef="auto"``), target entropy -act_dim, actor updated every
    # step). CleanRL's sac_continuous_action.py differs only in q_lr 1e-3, learning_starts 5e3
    # and policy_frequency 2; the zoo's values are kept so that ``diffctl bench sac --env
    # mujoco:HalfCheetah-v5`` runs SB3 with the very same hyperparameters.
    "mujoco:HalfCheetah-v5": SACConfig(
        total_steps=1_000_000,
        buffer_size=1_000_000,
        batch_size=256,
        learning_starts=10_000,
        actor_lr=3e-4,
        critic_lr=3e-4,
        alpha_lr=3e-4,
        gamma=0.99,
        tau=0.005,
        policy_frequency=1,
        alpha=1.0,
        hidden=(256, 256),
        log_interval=1_000,
    ),
}


# -------------------------------------------------------------------- dqn
@dataclass(frozen=True)
class DQNConfig:
    """DQN hyperparameters (Mnih et al. 2015) with the Rainbow switches ``double`` (van Hasselt
    et al. 2016), ``dueling`` (Wang et al. 2016), ``n_step`` (Hessel et al. 2018) and
    ``prioritized`` (Schaul et al. 2016). The defaults start from rl-baselines3-zoo's DQN for
    ``CartPole-v1`` (hyperparams/dqn.yml: 50k steps, lr 2.3e-3, batch 64, buffer 100k, 1000
    random warm-up steps, 128 gradient steps every 256 env steps, target copied every 10 env
    steps, epsilon 1 -> 0.04 over the first 16% of the run, Huber loss, grad-norm 10), tuned
    here to pass 475 on ``cartpole`` (deterministic evaluation) within 50k env steps: 4 envs,
    2x64 ReLU network (a third of the update time of 2x256 on the CPU), 3-step returns and the
    learning rate decayed linearly to 0. Without the last two, runs reached 500 and then
    collapsed (seeds 0-2 ended at 17 to 500); without 3-step returns, fewer updates did not
    learn. Still plain DQN otherwise (no double Q, dueling head or prioritised replay), so
    that ``diffctl bench dqn`` runs SB3's DQN (``n_steps=3``) with the same values."""

    total_steps: int = 50_000
    num_envs: int = 4
    buffer_size: int = 100_000
    batch_size: int = 64
    learning_starts: int = 1_000
    """env steps of uniformly random actions before the first update"""
    train_frequency: int = 256
    """env steps between two phases of ``gradient_steps`` updates"""
    gradient_steps: int = 128
    """gradient steps per phase"""
    learning_rate: float = 2.3e-3
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the run (SB3's ``lin_`` schedules)"""
    gamma: float = 0.99
    target_update_interval: int = 10
    """env steps between target-network updates (Mnih et al.'s C)"""
    tau: float = 1.0
    """target update ``theta' <- tau theta + (1 - tau) theta'``; 1: a hard copy"""
    start_epsilon: float = 1.0
    end_epsilon: float = 0.04
    exploration_fraction: float = 0.16
    """fraction of ``total_steps`` over which epsilon decays linearly to ``end_epsilon``"""
    loss: str = "huber"
    """the TD-error loss: huber (smooth L1, Mnih et al.'s error clipping) or mse"""
    max_grad_norm: float = 10.0
    """clip the gradient's global norm to this (0: no clipping)"""
    hidden: tuple[int, ...] = (64, 64)
    double: bool = False
    """double DQN: the online network picks the next action, the target network values it"""
    dueling: bool = False
    """dueling head Q = V + A - mean(A)"""
    n_step: int = 3
    """n-step returns (1: the one-step target)"""
    prioritized: bool = False
    """prioritised replay (proportional variant)"""
    alpha: float = 0.6
    """priority exponent of prioritised replay"""
    beta0: float = 0.4
    """initial importance-sampling exponent, annealed linearly to 1 over the run"""
    priority_eps: float = 1e-6
    """added to |TD error| so that no priority is 0"""
    log_interval: int = 1_000
    """env steps between history records"""
    compile: bool = False
    """run the loss through ``torch.compile`` (off by default, as the other off-policy agents)"""

    def __post_init__(self) -> None:
        for name in (
            "total_steps",
            "num_envs",
            "buffer_size",
            "batch_size",
            "train_frequency",
            "gradient_steps",
            "target_update_interval",
            "n_step",
            "log_interval",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        starts = self.learning_starts
        if isinstance(starts, bool) or not isinstance(starts, int) or starts < 0:
            raise ValueError(f"learning_starts: expected an int >= 0, got {starts!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: expected > 0, got {self.learning_rate!r}")
        for name in ("gamma", "start_epsilon", "end_epsilon", "alpha", "beta0"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau: expected a value in (0, 1], got {self.tau!r}")
        if not 0.0 < self.exploration_fraction <= 1.0:
            raise ValueError(
                f"exploration_fraction: expected a value in (0, 1], got "
                f"{self.exploration_fraction!r}"
            )
        if self.loss not in ("huber", "mse"):
            raise ValueError(f"loss: expected 'huber' or 'mse', got {self.loss!r}")
        if not self.max_grad_norm >= 0:
            raise ValueError(f"max_grad_norm: expected >= 0, got {self.max_grad_norm!r}")
        if not self.priority_eps > 0:
            raise ValueError(f"priority_eps: expected > 0, got {self.priority_eps!r}")
        if self.total_steps < self.num_envs:
            raise ValueError(
                f"total_steps: {self.total_steps} is less than num_envs {self.num_envs}"
            )
        if self.buffer_size < self.num_envs:
            raise ValueError(
                f"buffer_size: {self.buffer_size} is less than num_envs {self.num_envs}"
            )
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer sizes, got {self.hidden!r}")


DQN_PRESETS: dict[str, DQNConfig] = {"cartpole": DQNConfig()}


# -------------------------------------------------------------------- apg
@dataclass(frozen=True)
class APGConfig:
    """APG hyperparameters; defaults tuned here for ``pendulum`` (Brax's ``apg`` uses the same
    recipe: short differentiable windows, Adam, gradient clipping). Many small updates matter
    more than large batches: 8 envs x 32-step windows, ~600 Adam steps for 150k env steps."""

    total_steps: int = 150_000
    """env steps over all envs"""
    num_envs: int = 8
    horizon: int = 32
    """steps backpropagated through per update (truncated BPTT window)"""
    learning_rate: float = 3e-3
    gamma: float = 0.99
    max_grad_norm: float = 1.0
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    def __post_init__(self) -> None:
        for name in ("total_steps", "num_envs", "horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        for name in ("learning_rate", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma: expected a value in [0, 1], got {self.gamma!r}")
        if self.total_steps < self.num_envs * self.horizon:
            raise ValueError(
                f"total_steps: {self.total_steps} is less than one window "
                f"({self.num_envs * self.horizon})"
            )
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer sizes, got {self.hidden!r}")


APG_PRESETS: dict[str, APGConfig] = {"pendulum": APGConfig()}


def _validate_natural_gradient_config(cfg: Any, rates: tuple[str, ...]) -> None:
    """Checks shared by ``TRPOConfig`` and ``NPGConfig`` (each names the bad field)."""
    for name in ("total_steps", "num_envs", "num_steps", "cg_iters", "vf_epochs"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    for name in ("vf_lr", "obs_clip", "reward_clip", *rates):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name}: expected > 0, got {getattr(cfg, name)!r}")
    for name in ("cg_damping", "cg_tol"):
        if not getattr(cfg, name) >= 0:
            raise ValueError(f"{name}: expected >= 0, got {getattr(cfg, name)!r}")
    for name in ("gamma", "gae_lambda"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"{name}: expected a value in [0, 1], got {getattr(cfg, name)!r}")
    value = cfg.vf_minibatches
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"vf_minibatches: expected a positive int, got {value!r}")
    if cfg.batch_size % cfg.vf_minibatches:
        raise ValueError(
            f"vf_minibatches: {cfg.vf_minibatches} does not divide the batch "
            f"num_envs * num_steps = {cfg.batch_size}"
        )
    if cfg.total_steps < cfg.batch_size:
        raise ValueError(
            f"total_steps: {cfg.total_steps} is less than one batch ({cfg.batch_size})"
        )
    if not cfg.hidden or any(h < 1 for h in cfg.hidden):
        raise ValueError(f"hidden: expected positive layer sizes, got {cfg.hidden!r}")


# -------------------------------------------------------------------- trpo, npg
@dataclass(frozen=True)
class NaturalGradientConfig:
    """The fields ``TRPOConfig`` and ``NPGConfig`` share: rollouts, GAE, conjugate gradient,
    the value critic, normalisation, networks. Defaults: sb3-contrib's TRPO (15
    conjugate-gradient steps with damping 0.1, a value critic fitted by 10 epochs of Adam at lr
    1e-3 on minibatches of 128, gamma 0.99, GAE 0.95, full-batch advantage normalisation, 2x64
    tanh networks), with 16 envs x 128 steps and ``PPOConfig``'s observation normalisation
    (reward scaling optional)."""

    total_steps: int = 200_000
    """env steps over all envs"""
    num_envs: int = 16
    num_steps: int = 128
    """rollout length per env per iteration (batch = num_envs * num_steps)"""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    cg_iters: int = 15
    cg_damping: float = 0.1
    """lambda of (F + lambda I) x = g"""
    cg_tol: float = 1e-10
    """conjugate gradient stops updating once r^T r falls below this"""
    vf_lr: float = 1e-3
    """Adam learning rate of the value critic"""
    vf_epochs: int = 10
    """epochs of minibatch Adam steps on the critic per iteration"""
    vf_minibatches: int = 16
    norm_adv: bool = True
    norm_obs: bool = True
    norm_reward: bool = False
    """divide rewards by the running std of the discounted return (as ``PPOConfig``)"""
    obs_clip: float = 10.0
    reward_clip: float = 10.0
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps


@dataclass(frozen=True)
class TRPOConfig(NaturalGradientConfig):
    """TRPO hyperparameters (Schulman et al. 2015, with GAE of Schulman et al. 2016): the shared
    fields (``NaturalGradientConfig``) and the trust region with its backtracking line search
    (sb3-contrib's: max KL 0.01, backtracking by 0.8 up to 10 times); ``PRESETS`` holds the
    values tuned here for ``pendulum`` and ``cartpole``."""

    max_kl: float = 0.01
    """delta, the trust region: mean KL(pi_old || pi) of an accepted step"""
    backtrack_iters: int = 10
    """step fractions tried: backtrack_coef ** 0, 1, ..., backtrack_iters - 1"""
    backtrack_coef: float = 0.8

    def __post_init__(self) -> None:
        _validate_natural_gradient_config(self, ("max_kl",))
        value = self.backtrack_iters
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"backtrack_iters: expected a positive int, got {value!r}")
        if not 0.0 < self.backtrack_coef < 1.0:
            raise ValueError(
                f"backtrack_coef: expected a value in (0, 1), got {self.backtrack_coef!r}"
            )


#: Tuned configurations per env (the CLI starts from these). ``pendulum``: PPO's gamma 0.95 and
#: reward scaling with the default max KL 0.01 pass -250 (deterministic evaluation, 20
#: episodes) in 150k steps on seeds 0-2 (-183, -194, -197; max KL 0.03 learns faster, then
#: oscillates: -280 on seeds 1 and 2). ``cartpole``: the defaults with 64-step rollouts and
#: critic minibatches of 128, 500 on seeds 0-2 in 50k steps.
TRPO_PRESETS: dict[str, TRPOConfig] = {
    "pendulum": TRPOConfig(total_steps=150_000, gamma=0.95, norm_reward=True),
    "cartpole": TRPOConfig(total_steps=50_000, num_steps=64, vf_minibatches=8, norm_obs=False),
}


@dataclass(frozen=True)
class NPGConfig(NaturalGradientConfig):
    """Natural policy gradient hyperparameters (Kakade 2001; the normalised step of
    Rajeswaran et al. 2017): TRPO's loop without the line search, each step scaled so that the
    quadratic model of the KL, ``0.5 d^T F d``, equals ``step_size``; the other fields are
    ``NaturalGradientConfig``'s. ``PRESETS`` holds the values tuned here for ``pendulum`` and
    ``cartpole``."""

    step_size: float = 0.01
    """delta: each step has 0.5 d^T F d = delta (the quadratic KL model)"""

    def __post_init__(self) -> None:
        _validate_natural_gradient_config(self, ("step_size",))


#: Tuned configurations per env: TRPO's presets with ``step_size = max_kl`` (with these TRPO's
#: line search nearly always accepts the full step, so the two learn alike). ``pendulum``: 200k
#: steps, where TRPO takes 150k: after 150k, seeds 0-3 returned -339, -188, -216 and -316 on a
#: 2-core AMD EPYC with one thread (-183, -244, -195 on seeds 0-2 on an Intel Xeon), after 200k
#: -195, -188, -184 and -192 there; ``cartpole``: 500 on seeds 0-2.
NPG_PRESETS: dict[str, NPGConfig] = {
    "pendulum": NPGConfig(total_steps=200_000, gamma=0.95, norm_reward=True),
    "cartpole": NPGConfig(total_steps=50_000, num_steps=64, vf_minibatches=8, norm_obs=False),
}


def _validate_evolution_config(cfg: Any, rates: tuple[str, ...]) -> None:
    """Checks shared by ``ESConfig`` and ``ARSConfig`` (each names the bad field)."""
    for name in ("total_steps", "num_directions"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    value = cfg.episode_steps
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"episode_steps: expected an int >= 0 (0: the env's limit), got {value!r}")
    value = cfg.starts
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"starts: expected an int >= 0 (0: one start per pair), got {value!r}")
    for name in rates:
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name}: expected > 0, got {getattr(cfg, name)!r}")
    if any(h < 1 for h in cfg.hidden):
        raise ValueError(f"hidden: expected positive layer sizes, got {cfg.hidden!r}")


# -------------------------------------------------------------------- es
@dataclass(frozen=True)
class ESConfig:
    """OpenAI-ES hyperparameters (Salimans et al. 2017); defaults tuned here for ``cartpole``:
    a linear policy (``hidden=()``), 32 antithetic pairs per generation, sigma 0.1, Adam at
    0.1 with the paper's L2 coefficient 0.005; 40 generations reach 500 (deterministic
    evaluation) on seeds 0-2 (at 0.03 and 20 generations, seeds 1 and 2 stay below 300)."""

    total_steps: int = 1_280_000
    """env-step budget, each generation counted as ``2 * num_directions * max(starts, 1)``
    whole episodes of ``episode_steps`` (the steps actually taken, episodes ending early, are
    what ``step`` logs)"""
    num_directions: int = 32
    """antithetic pairs per generation: ``2 * num_directions`` perturbed policies, one env each"""
    sigma: float = 0.1
    """noise std of the parameter perturbations"""
    learning_rate: float = 0.1
    """Adam step size on the ES gradient estimate"""
    weight_decay: float = 0.005
    """L2 coefficient subtracted from the gradient estimate (Salimans et al.'s ``l2coeff``)"""
    episode_steps: int = 0
    """episode length of each perturbed policy (0: the env's time limit)"""
    starts: int = 0
    """0: each antithetic pair runs one episode from a start of its own; K > 0: every perturbed
    policy runs K episodes from the same K starts (drawn once per generation), its return
    their mean, so all returns of a generation differ by the perturbation only"""
    normalize_obs: bool = False
    """normalise observations with running statistics of the states the generations visit"""
    hidden: tuple[int, ...] = ()
    """hidden layer sizes of the policy; ``()`` is a linear policy"""
    activation: str = "tanh"

    def __post_init__(self) -> None:
        _validate_evolution_config(self, ("sigma", "learning_rate"))
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: expected >= 0, got {self.weight_decay!r}")


ES_PRESETS: dict[str, ESConfig] = {"cartpole": ESConfig()}


# -------------------------------------------------------------------- ars
@dataclass(frozen=True)
class ARSConfig:
    """Augmented Random Search hyperparameters (Mania et al. 2018, Algorithm 2). The defaults
    are the paper's linear policy with its V2-t recipe; ``PRESETS`` holds the ``pendulum``
    tuning. ``version="v2"`` normalises states (ARS V2), ``"v1"`` does not; ``num_top <
    num_directions`` is the ``-t`` variant (the best ``b`` directions)."""

    total_steps: int = 2_000_000
    """env-step budget, each generation counted as ``2 * num_directions * max(starts, 1)``
    whole episodes of ``episode_steps`` (the paper's N directions, evaluated at +nu delta and
    -nu delta)"""
    num_directions: int = 32
    """N, directions per generation"""
    num_top: int = 16
    """b <= N, the directions with the best max(r+, r-) kept for the update"""
    step_size: float = 0.02
    """alpha"""
    noise: float = 0.03
    """nu, the exploration noise"""
    version: str = "v2"
    """"v1": no state normalisation; "v2": states normalised by their running mean and std"""
    episode_steps: int = 0
    """episode length of each perturbed policy (0: the env's time limit)"""
    starts: int = 0
    """0: each antithetic pair runs one episode from a start of its own; K > 0: every perturbed
    policy runs K episodes from the same K starts (drawn once per generation), its return
    their mean, so all returns of a generation differ by the perturbation only"""
    hidden: tuple[int, ...] = ()
    """hidden layer sizes; ``()`` is the paper's linear policy ``a = M s`` (no bias)"""
    activation: str = "tanh"

    def __post_init__(self) -> None:
        _validate_evolution_config(self, ("step_size", "noise"))
        top = self.num_top
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= self.num_directions:
            raise ValueError(f"num_top: expected an int in [1, num_directions], got {top!r}")
        if self.version not in ("v1", "v2"):
            raise ValueError(f"version: expected 'v1' or 'v2', got {self.version!r}")


#: pendulum: the linear ``a = M s`` cannot swing the pendulum up and balance it (about -1100
#: after 640k steps in a sweep here: a swing-up pumps with the velocity at the bottom and damps
#: it at the top, a product of the observations), so a 16-unit tanh layer, its output layer
#: starting at 0, with large perturbations. Two changes to the paper's recipe make it reach
#: -250 (deterministic evaluation) on every seed tried (0-4), not only seed 0: no state
#: normalisation (V1; pendulum's observations are O(1) already, and with V2 seeds 1 and 2
#: stayed at -800/-900, the rod swinging over the top instead of balancing), and every
#: perturbed policy run from the same 8 starts (``starts``): with one random start per pair,
#: the start decides a pendulum return more than the perturbation does, so the top-b choice
#: picked the pairs with easy starts. 150 generations of 16 x 2 x 8 episodes.
ARS_PRESETS: dict[str, ARSConfig] = {
    "pendulum": ARSConfig(
        total_steps=150 * 2 * 16 * 8 * 200,
        num_directions=16,
        num_top=8,
        step_size=0.3,
        noise=0.3,
        version="v1",
        starts=8,
        hidden=(16,),
    )
}


#: algorithm name -> (its config class, its tuned presets by env name)
CONFIGS: dict[str, tuple[type, dict[str, Any]]] = {
    "reinforce": (ReinforceConfig, REINFORCE_PRESETS),
    "a2c": (A2CConfig, A2C_PRESETS),
    "ppo": (PPOConfig, PPO_PRESETS),
    "ddpg": (DDPGConfig, DDPG_PRESETS),
    "td3": (TD3Config, TD3_PRESETS),
    "sac": (SACConfig, SAC_PRESETS),
    "dqn": (DQNConfig, DQN_PRESETS),
    "apg": (APGConfig, APG_PRESETS),
    "trpo": (TRPOConfig, TRPO_PRESETS),
    "npg": (NPGConfig, NPG_PRESETS),
    "es": (ESConfig, ES_PRESETS),
    "ars": (ARSConfig, ARS_PRESETS),
}


def config_class(algo: str) -> type:
    """The config dataclass of ``algo`` (``PPOConfig`` for ``"ppo"``, ...)."""
    if algo not in CONFIGS:
        raise ValueError(f"algo: unknown algorithm {algo!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[algo][0]


def default_config(algo: str, env_name: str) -> Any:
    """The tuned config of ``algo`` for ``env_name`` (the generic defaults otherwise)."""
    cls = config_class(algo)
    return CONFIGS[algo][1].get(env_name, cls())
