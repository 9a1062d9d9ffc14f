"""diffctl.models: learned dynamics (linear least squares, MLP, PETS ensemble, grey-box system
identification), ``fit``/``evaluate``, checkpoints and the model-based RL loop."""

from .base import DynamicsModel, Standardizer, angle_features
from .checkpoint import MODEL_KINDS, build_model, load_model, save_model
from .dataset import TransitionData, split_episodes, transitions_from
from .ensemble import TS_MODES, EnsembleDynamics, EnsembleLinear
from .greybox import GreyBoxModel
from .linear import LinearModel
from .mlp import MLPDynamics
from .training import FitConfig, FitResult, evaluate, fit

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
    "save_model",
    "load_model",
    "build_model",
    "MODEL_KINDS",
]
