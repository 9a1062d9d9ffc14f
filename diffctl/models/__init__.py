"""diffctl.models: learned dynamics (linear least squares, MLP, PETS ensemble, grey-box system
identification), ``fit``/``evaluate`` and checkpoints. The model-based RL loop, which plans with
``diffctl.control``, is ``diffctl.models.mbrl``, and MBPO, which trains SAC on model rollouts,
``diffctl.models.mbpo`` (each imported on its own)."""

from .base import DynamicsModel, Standardizer, angle_features
from .checkpoint import MODEL_KINDS, build_model, load_model, save_model
from .dataset import TransitionData, split_episodes, transitions_from
from .ensemble import TS_MODES, EnsembleDynamics, EnsembleLinear
from .greybox import GreyBoxModel
from .linear import LinearModel
from .mlp import MLPDynamics
from .training import FitConfig, FitResult, evaluate, fit, train_val_split

__all__ = [
    "DynamicsModel",
    "Standardizer",
    "angle_features",
    "LinearModel",
    "MLPDynamics",
    "EnsembleDynamics",
    "EnsembleLinear",
    "TS_MODES",
    "GreyBoxModel",
    "TransitionData",
    "transitions_from",
    "split_episodes",
    "FitConfig",
    "FitResult",
    "fit",
    "evaluate",
    "train_val_split",
    "save_model",
    "load_model",
    "build_model",
    "MODEL_KINDS",
]
