"""Reward learning from demonstrations: MaxEnt IRL (exact on finite MDPs, sampled on continuous
envs), apprenticeship learning / max-margin, GAIL / AIRL, imitation through differentiable MPC,
behavioural cloning, the ``RewardModel`` they produce (``load_reward`` reads its file), and
AIRL's learned reward re-optimised by MPC and scored against the expert (``airl_reoptimise``)."""

from .adversarial import (
    AdversarialConfig,
    AdversarialResult,
    LearnedRewardRunner,
    adversarial_irl,
    load_adversarial,
    shaping_path,
)
from .bc import BCConfig, BCPolicy, BCResult, behavioural_cloning
from .demos import check_demos, empirical_initial, empirical_occupancy, finite_demo_states
from .margin import (
    MarginResult,
    MaxMarginConfig,
    ProjectionConfig,
    SampledMarginConfig,
    max_margin_irl,
    max_margin_irl_sampled,
    max_margin_loss,
    projection_irl,
)
from .maxent import (
    MaxEntConfig,
    MaxEntResult,
    SampledMaxEntConfig,
    SampledMaxEntResult,
    expected_value_difference,
    maxent_irl,
    maxent_irl_sampled,
)
from .mpc_imitation import MPCImitationConfig, MPCImitationResult, imitation_mpc, mpc_imitation
from .reoptimise import (
    ReoptimiseConfig,
    ReoptimiseResult,
    airl_reoptimise,
    normalised_score,
    uniform_random_policy,
)
from .reward import RewardConfig, RewardModel, load_reward

__all__ = [
    "AdversarialConfig",
    "AdversarialResult",
    "LearnedRewardRunner",
    "adversarial_irl",
    "load_adversarial",
    "shaping_path",
    "BCConfig",
    "BCPolicy",
    "BCResult",
    "behavioural_cloning",
    "check_demos",
    "empirical_initial",
    "empirical_occupancy",
    "finite_demo_states",
    "MarginResult",
    "MaxMarginConfig",
    "ProjectionConfig",
    "max_margin_irl",
    "SampledMarginConfig",
    "max_margin_irl_sampled",
    "max_margin_loss",
    "projection_irl",
    "MaxEntConfig",
    "MaxEntResult",
    "SampledMaxEntConfig",
    "SampledMaxEntResult",
    "expected_value_difference",
    "maxent_irl",
    "maxent_irl_sampled",
    "MPCImitationConfig",
    "MPCImitationResult",
    "imitation_mpc",
    "mpc_imitation",
    "ReoptimiseConfig",
    "ReoptimiseResult",
    "airl_reoptimise",
    "normalised_score",
    "uniform_random_policy",
    "RewardConfig",
    "RewardModel",
    "load_reward",
]
