"""jaxformer: a decoder-only language model as a composite of pure maps.

model = build(Config(...))          # V^T → R^{T×V}, a Map
params = model.init(key)            # a pytree
logits_TV = model(params, tokens_T) # pure; jit/grad/vmap apply unchanged
"""

from .core import (
    Map,
    Real,
    ShapeError,
    Space,
    Tokens,
    compose,
    parallel,
    repeat,
    residual,
    scope,
    tie,
    tokenwise,
)
from .models import Config, build, logits

__version__ = "0.1.0"
__all__ = [
    "Config",
    "Map",
    "Real",
    "ShapeError",
    "Space",
    "Tokens",
    "build",
    "compose",
    "logits",
    "parallel",
    "repeat",
    "residual",
    "scope",
    "tie",
    "tokenwise",
]
