"""Sharding constraints inside the model, for the partitioner: what stays whole where.

    the residual stream  at every repeated block's input and output: a batch [B, T, d]
                         split over data × fsdp × expert, T and d whole
    unstacked params     (W_E, W_pos, the final norm, an untied W_U) gathered over fsdp
                         where they are used, as FSDP gathers a module's weights
    a routed mixture     on a mesh with an expert axis: its tokens sent to their experts'
                         devices (``experts.py``), not the experts gathered to the tokens

Without the first, the partitioner may split activations along d to match the FSDP
weights and replicate the batch: every device would compute every sequence. Without the
second, it splits the embedding's output along d and then cannot reach the batch split
of the blocks except by replicating it ("Involuntary full rematerialization"). The
stacked params of the blocks need nothing: the partitioner gathers them a layer at a
time inside the scan.

The layers act on one sequence under ``vmap``, so the residual constraint is a
``custom_vmap``: its batched rule names the batch axis, which a plain constraint under
``vmap`` leaves free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import jax
from jax.custom_batching import custom_vmap
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..core import Map, Repeat, Wrapper, is_param
from ..layers.moe import MoE
from . import rules as R
from .experts import AXIS, expert_parallel


def _same(a):
    return a


@dataclass(frozen=True, repr=False)
class Pinned(Wrapper):
    """f with its input and output held by ``pin_x`` and its params by ``pin_params``:
    the identity on values. It stands in for f (same name, namespace and params)."""

    pin_x: Callable = _same
    pin_params: Callable = _same

    def inner(self, params):
        return self.pin_params(super().inner(params))

    def apply(self, params, x):
        return self.pin_x(super().apply(params, self.pin_x(x)))

    def forward(self, params, x):
        y, points = super().forward(params, self.pin_x(x))
        return self.pin_x(y), points


def pin_for_mesh(model: Map, mesh: Mesh, rules=R.RULES) -> Map:
    """``model`` with the residual stream and its unstacked params pinned on ``mesh``, and
    its routed mixtures of experts dispatched over the expert axis if the mesh has one."""
    if mesh.shape.get(AXIS, 1) > 1 and rules.get("E") == AXIS:
        moes = {id(m): m for _, m in model.walk() if isinstance(m, MoE) and m.impl == "routed"}
        for m in moes.values():
            model = model._replace(m, replace(m, routing=expert_parallel(mesh, m.E, m.capacity)))
    x = residual_pin(mesh)
    for path, m in list(model.walk()):
        if isinstance(m, Repeat):
            # every block a repeat scans (a pattern's kinds too) holds its stream in place
            model = model.replace(
                path, m.with_children(tuple(Pinned(f, pin_x=x) for f in m.children()))
            )
    return Pinned(model, pin_params=gather_pin(model.spec(), mesh, rules))


def residual_pin(mesh: Mesh) -> Callable:
    """x ↦ x: one sequence [T, d] whole; under ``vmap`` a batch split over the batch axes."""
    whole, batched = NamedSharding(mesh, P()), NamedSharding(mesh, P(R.BATCH))

    @custom_vmap
    def pin(x):
        return jax.lax.with_sharding_constraint(x, whole)

    @pin.def_vmap
    def pin_batch(axis_size, in_batched, x):
        sharding = batched if in_batched[0] else whole
        return jax.lax.with_sharding_constraint(x, sharding), in_batched[0]

    return pin


def gather_pin(spec, mesh: Mesh, rules=R.RULES) -> Callable:
    """θ ↦ θ with every parameter without a layer axis L held unsplit over fsdp."""
    gathered = {k: tuple(a for a in R.axes_of(v) if a != "fsdp") for k, v in rules.items()}
    pins = {
        jax.tree_util.keystr(path): NamedSharding(mesh, R.partition_spec(p, mesh.shape, gathered))
        for path, p in jax.tree_util.tree_leaves_with_path(spec, is_leaf=is_param)
        if "L" not in p.axes
    }

    def pin(params):
        def one(path, w):
            s = pins.get(jax.tree_util.keystr(path))
            return w if s is None else jax.lax.with_sharding_constraint(w, s)

        return jax.tree_util.tree_map_with_path(one, params)

    return pin
