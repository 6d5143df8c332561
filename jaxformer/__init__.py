"""jaxformer: a decoder-only language model as a composite of pure maps.

model = build(Config(...))          # V^T → R^{T×V}, a Map
params = model.init(key)            # a pytree
logits_TV = model(params, tokens_T) # pure; jit/grad/vmap apply unchanged

The combinator f + g is ``jaxformer.core.parallel``; ``jaxformer.parallel`` is the
sharding package (meshes, sharded init and step).
"""

from .interrupts import deferred_while_importing

with deferred_while_importing():  # a Ctrl-C while jax loads: exit 130 once it has
    from . import describe  # noqa: F401  (fills core's display hook: maps show in notebooks)
    from .core import (
        Map,
        Real,
        ShapeError,
        Space,
        Tokens,
        compose,
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
    "repeat",
    "residual",
    "scope",
    "tie",
    "tokenwise",
]
