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

import jax
from jax.ad_checkpoint import checkpoint_name

from ..core import Map, Wrapper
from ..models import Config, build
from ..models import layout as N

SAVED_NAMES = (N.ATTN, N.MLP)


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
            path = N.at(N.BLOCKS, name)
            if any(p == path for p, _ in model.walk()):
                model = model.replace(path, Named(model.find(path)))
        return model
    raise ValueError(f"unknown remat policy {remat!r}; choose none, full, dots or names")


@dataclass(frozen=True, repr=False)
class Named(Wrapper):
    """f, its output marked ``checkpoint_name(·, f.name)`` (the identity outside remat)."""

    def apply(self, params, x):
        return checkpoint_name(super().apply(params, x), self.name)

    def forward(self, params, x):
        y, points = super().forward(params, x)
        return checkpoint_name(y, self.name), points
