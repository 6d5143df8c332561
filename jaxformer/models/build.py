"""Models as composites: tokens V^T → logits R^{T×V}, for one sequence.

    build(c) = head ∘ layers ∘ stem         U ∘ N_f ∘ B^L ∘ P ∘ E

from the family's parts (``models/families/<c.family>.py``). The result carries its
config (``model.config``). Batch with ``jax.vmap(model, in_axes=(None, 0))``, or call
``logits``, which also validates the token ids on the host first.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from ..core import Compose, Map, Wrapper, compose, tie
from . import layout as N
from . import parts
from .config import Config
from .family import family_of


@dataclass(frozen=True, repr=False)
class Model(Wrapper):
    """``build(config)``: the composite, and the config it was built from. An edit of the
    composite (``replace``, ``untie``) is no longer what ``build(config)`` makes, so it is
    the edited composite alone, without a config."""

    config: Config

    def with_children(self, children):
        return children[0]


def block(c: Config) -> Map:
    """One transformer block B: R^{T×d} → R^{T×d} of the family of ``c``."""
    return family_of(c.family).block(c)


def build(c: Config, remat=None) -> Model:
    """The model of config ``c``: V^T → R^{T×V} (T ≤ c.context). ``remat`` (a
    ``jax.checkpoint`` policy or True) recomputes each block in the backward pass."""
    fam = family_of(c.family)
    head = (fam.head or parts.head)(c)
    stack = fam.layers(c, remat) if fam.layers else parts.layers(c, fam.block(c), remat)
    stem = (fam.stem or parts.stem)(c)
    model = compose(*_maps(head), stack, *_maps(stem), name=c.family)
    if c.tied:
        model = tie(model, dst=(N.UNEMBED, "W_U"), src=(N.EMBED, "W_E"), fn=jnp.transpose)
    return Model(model, c)


def _maps(m: Map) -> tuple[Map, ...]:
    """An unnamed composite's maps (``pos∘embed``): the model's chain lists them itself."""
    return m.maps if isinstance(m, Compose) and m.inline else (m,)
