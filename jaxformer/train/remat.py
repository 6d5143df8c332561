"""Rematerialisation policies by name: what the backward pass keeps of each block.

    none   keep every activation (fastest, most memory)
    full   keep nothing inside a block; recompute it in the backward pass
    dots   keep the matmul outputs without batch dimensions (recompute the cheap rest)
    names  keep only the points named with ``checkpoint_name``: each block's attention
           and MLP outputs ("attn", "mlp"), what they write to the residual stream

A policy applies to the block of the ``repeat`` (the scan over layers), so memory for
activations is that of one block plus the residual stream at each layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
from jax.ad_checkpoint import checkpoint_name

from ..core import Map
from ..models import Config, build

SAVED_NAMES = ("attn", "mlp")


def build_model(config: Config, remat: str = "none") -> Map:
    """``build(config)`` with the named remat policy on its layer stack."""
    if remat == "none":
        return build(config)
    if remat == "full":
        return build(config, remat=True)
    if remat == "dots":
        return build(config, remat=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
    if remat == "names":
        model = build(config, remat=jax.checkpoint_policies.save_only_these_names(*SAVED_NAMES))
        for name in SAVED_NAMES:
            if any(p == f"blocks.{name}" for p, _ in model.walk()):
                model = model.replace(f"blocks.{name}", Named(model.find(f"blocks.{name}")))
        return model
    raise ValueError(f"unknown remat policy {remat!r}; choose none, full, dots or names")


@dataclass(frozen=True, repr=False)
class Named(Map):
    """f, its output marked ``checkpoint_name(·, f.name)`` (the identity outside remat)."""

    f: Map
    namespace: ClassVar[bool] = False

    name = property(lambda self: self.f.name)
    domain = property(lambda self: self.f.domain)
    codomain = property(lambda self: self.f.codomain)

    def children(self):
        return (self.f,)

    def with_children(self, children):
        return Named(children[0])

    def spec(self):
        return self.f.spec_in()

    def apply(self, params, x):
        return checkpoint_name(self.f(self.f.own(params), x), self.name)

    def forward(self, params, x):
        y, points = self.f.trace(self.f.own(params), x)
        return checkpoint_name(y, self.name), points
