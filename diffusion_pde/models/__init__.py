"""Node-classification models whose layers are steps of the diffusion ODE (DIFFormer and the
MPNN baselines), in discrete or continuous depth."""

from .chunked import check_chunkable, predict_chunked
from .classifier import NodeClassifier, build_model
from .config import ATTENTION_MODELS, CONTINUOUS_MODELS, MODELS, ModelConfig
from .depth import ContinuousDiffusion, DiscreteDiffusion
from .propagation import Propagation

__all__ = [
    "ATTENTION_MODELS",
    "CONTINUOUS_MODELS",
    "MODELS",
    "ContinuousDiffusion",
    "DiscreteDiffusion",
    "ModelConfig",
    "NodeClassifier",
    "Propagation",
    "build_model",
    "check_chunkable",
    "predict_chunked",
]
