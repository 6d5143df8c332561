"""The maps a transformer is made of. Each docstring states the map: domain → codomain,
the formula, and the parameter shapes."""

from .attention import Attention
from .embedding import Embedding, Unembedding
from .mlp import ACTIVATIONS, MLP, GeGLU, SwiGLU
from .moe import MoE
from .norm import LayerNorm, Normalise, RMSNorm, affine, center, normalise, scale
from .positional import LearnedPositions, SinusoidalPositions, rope, rope_angles, sinusoid_table

__all__ = [
    "ACTIVATIONS",
    "Attention",
    "Embedding",
    "GeGLU",
    "LayerNorm",
    "LearnedPositions",
    "MLP",
    "MoE",
    "Normalise",
    "RMSNorm",
    "SinusoidalPositions",
    "SwiGLU",
    "Unembedding",
    "affine",
    "center",
    "normalise",
    "rope",
    "rope_angles",
    "scale",
    "sinusoid_table",
]
