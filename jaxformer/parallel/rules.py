"""Sharding rules: each parameter axis, named by its letter, goes to a mesh axis (or none).

Every ``Param`` names its axes with the letters of the math, so one table shards every
layer, present and future, with no per-layer code::

    RULES = {"V": "tensor", "H": "tensor", "G": "tensor", "m": "tensor",
             "d": "fsdp", "E": "expert", "e": None, "L": None, "k": None, "T": None}

    W_E [V, d]       → P("tensor", "fsdp")          vocabulary rows split (Megatron embedding)
    W_Q [L, H, d, k] → P(None, "tensor", "fsdp", None)   heads split; W_O [L, H, k, d] likewise
    W_in [L, d, m]   → P(None, "fsdp", "tensor")    hidden units split; W_out [L, m, d] likewise
    gamma [L, d]     → P(None, "fsdp")
    W_gate [L, E, d, m] → P(None, "expert", "fsdp", "tensor")   a mixture's experts split

On ``tensor`` a block computes its heads and hidden units locally and sums their writes
to the residual stream once (one all-reduce per branch). On ``fsdp`` every weight's d
axis is split: a use all-gathers it and its gradient is reduce-scattered. On ``expert``
each device holds E/P experts, and tokens travel to them (``experts.py``); the router
W_R [d, e], small and read by every token, stays whole. L (the scanned layer axis), k (a
head's own space), T (positions) and r (a LoRA adapter's rank) are never split.

A value may also be a tuple of mesh axes (split over their product). A mesh axis splits
at most one axis of a parameter: a later letter mapped to a used mesh axis is replicated.
An axis whose size the mesh axis does not divide is an error, never a silent
replication: it names the parameter and the two fixes (another mesh, or the letter
mapped to None, e.g. ``{**RULES, "G": None}`` for few key/value heads).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..core import Param, is_param
from .mesh import MeshError

RULES: Mapping[str, str | tuple[str, ...] | None] = {
    "V": "tensor",
    "H": "tensor",
    "G": "tensor",
    "m": "tensor",
    "d": "fsdp",
    "L": None,
    "k": None,
    "T": None,
    "E": "expert",  # a mixture's experts: E/P on each device of the expert axis
    "e": None,  # the router's score of each expert: every token scores all (W_R [d, e])
    "r": None,  # a LoRA adapter's rank (A [d, r], B [r, H, k]): small, never split
}
BATCH = ("data", "fsdp", "expert")  # the mesh axes the batch is split over


def partition_spec(param: Param, mesh_shape: Mapping[str, int], rules=RULES, where="") -> P:
    """The PartitionSpec of one parameter: its axis letters read through ``rules``."""
    out, used = [], set()
    for letter, n in zip(param.axes, param.shape):
        if letter not in rules:
            raise MeshError(
                f"{where}: axis {letter!r} of {param.axes} has no sharding rule; add "
                f"{letter!r} to the rules (a mesh axis, or None to replicate it)"
            )
        axes = axes_of(rules[letter])
        for a in axes:
            if a not in mesh_shape:
                raise MeshError(f"rule {letter!r} → {a!r}: the mesh has no axis {a!r}")
        axes = tuple(a for a in axes if a not in used)
        k = math.prod(mesh_shape[a] for a in axes)
        if n % k:
            raise MeshError(
                f"{where}: axis {letter!r} of size {n} (shape {param.shape}) is split over mesh "
                f"axes {axes} of size {k}, which does not divide it; choose a mesh whose "
                f"{'×'.join(axes)} size divides {n}, or replicate {letter!r} "
                f"(rules={{**RULES, {letter!r}: None}})"
            )
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return P(*out)


def axes_of(rule) -> tuple[str, ...]:
    """A rule's value (None, a mesh axis, or a tuple of them) as a tuple of mesh axes."""
    return () if rule is None else (rule,) if isinstance(rule, str) else tuple(rule)


def param_shardings(spec, mesh: Mesh, rules=RULES):
    """A NamedSharding for each parameter of ``spec`` (a pytree of ``Param``)."""

    def one(path, p: Param):
        return NamedSharding(mesh, partition_spec(p, mesh.shape, rules, jax.tree_util.keystr(path)))

    return jax.tree_util.tree_map_with_path(one, spec, is_leaf=is_param)


def opt_state_shardings(optimizer: optax.GradientTransformation, abstract_opt_state, shardings):
    """The optimizer state's shardings: a copy of the params (Adam's μ, ν) shards like
    them; everything else (step counts) is replicated."""
    mesh = jax.tree.leaves(shardings)[0].mesh
    return optax.tree_map_params(
        optimizer,
        lambda _, s: s,
        abstract_opt_state,
        shardings,
        transform_non_params=lambda _: replicated(mesh),
        is_leaf=lambda x: isinstance(x, optax.MaskedNode),
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """A batch [M, b, T+1] (M micro-batches of b windows): b is split over data × fsdp ×
    expert."""
    return NamedSharding(mesh, P(None, BATCH, None))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())
