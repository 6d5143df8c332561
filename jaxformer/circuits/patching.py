"""Activation patching as composition: an intervention is a new composite.

``Patched(f)`` is the map f with a point blended toward a stored one,

    at="output":  y = f(x) + m ⊙ (v − f(x))
    at="input":   y = f(x + m ⊙ (v − x))
    at="z":       attention with each head's result z^h blended, z^h + m^h ⊙ (v^h − z^h)

where the stored point v and the mask m ∈ [0, 1] are *parameters* of the patched
composite, filed beside f's as ``"<name>.patch"``. Inside a ``repeat`` they are
stacked over layers like every other block parameter, so one mask selects a layer,
a position or a head, and a sweep over masks is one ``vmap`` of one jitted function.

    m = patched(model, "blocks.attn")                         # a new composite
    p = with_patch(params, "blocks.attn", value=v_LTd, mask=m_LT1)
    logits = m(p, corrupt_tokens)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from ..core import Map, Params
from ..layers import Attention
from ..models import layout as N
from ..models import validate_tokens
from .anatomy import Anatomy, points_of, stream_in

AT = ("input", "output", "z")


@dataclass(frozen=True, repr=False)
class Patched(Map):
    """f with its input, output or head results blended toward the stored ``value`` by
    ``mask``, both read from ``params["<name>.patch"]``. Same spaces and name as f."""

    f: Map
    at: str = "output"
    namespace: ClassVar[bool] = False

    def __post_init__(self):
        if self.at not in AT:
            raise ValueError(f"Patched: at must be one of {AT}, got {self.at!r}")
        if self.at == "z" and not isinstance(self.f, Attention):
            raise ValueError(f"Patched: at='z' patches attention heads; {self.f.name} is not one")

    name = property(lambda self: self.f.name)
    domain = property(lambda self: self.f.domain)
    codomain = property(lambda self: self.f.codomain)
    key = property(lambda self: f"{self.f.name}.patch")

    def children(self):
        return (self.f,)

    def with_children(self, children):
        return Patched(children[0], self.at)

    def spec(self):
        return self.f.spec_in()  # the patch is not drawn: ``with_patch`` files it

    def forward(self, params, x):
        p = params[self.key]
        blend = lambda a, v: a + p["mask"].astype(a.dtype) * (v.astype(a.dtype) - a)
        if self.at == "input":
            return self.f.trace(self.f.own(params), blend(x, p["value"]))
        y, points = self.f.trace(self.f.own(params), x)
        if self.at == "output":
            y = blend(y, p["value"])
            return y, {**points, self.name: y}
        z = points[f"{self.name}.z"]
        dz = blend(z, p["value"]) - z
        y = y + jnp.einsum("htk,hkd->td", dz, self.f.own(params)["W_O"].astype(dz.dtype))
        return y, {**points, self.name: y, f"{self.name}.z": z + dz}

    def apply(self, params, x):
        return self.forward(params, x)[0]


def patched(model: Map, path: str, at: str = "output") -> Map:
    """The composite with the sub-map at ``path`` wrapped in ``Patched``."""
    return model.replace(path, Patched(model.find(path), at))


def with_patch(params: Params, path: str, value: jax.Array, mask: jax.Array) -> Params:
    """``params`` with the patch for the sub-map at ``path`` filed where ``Patched`` reads
    it: beside the sub-map's own parameters (the namespaces on the path)."""
    *namespaces, name = path.split(".")
    patch = {"value": value, "mask": mask}

    def put(tree, keys):
        if not keys:
            return {**tree, f"{name}.patch": patch}
        return {**tree, keys[0]: put(tree[keys[0]], keys[1:])}

    return put(params, namespaces)


def logit_difference(correct: int, wrong: int, position: int = -1) -> Callable:
    """A metric: logits[position, correct] − logits[position, wrong]."""
    return lambda logits: logits[position, correct] - logits[position, wrong]


def _site(a: Anatomy, point: str) -> tuple[str, str]:
    at = lambda name: N.at(N.BLOCKS, name)
    sites = {
        "resid_pre": (at(a.blocks.f.name), "input"),
        N.ATTN: (at(N.ATTN), "output"),
        "z": (at(N.ATTN), "z"),
    }
    if not (a.parallel and a.mlp is not None):  # a parallel block has no stream between A, M
        sites[N.RESID_MID] = (at(N.RESID_MID), "output")
    if a.mlp is not None:
        sites |= {N.MLP: (at(N.MLP), "output"), N.RESID_POST: (at(N.RESID_POST), "output")}
    if point not in sites:
        raise ValueError(f"patch point must be one of {sorted(sites)}, got {point!r}")
    return sites[point]


def patch_sweep(
    model: Map, params: Params, clean, corrupt, point: str, metric: Callable
) -> jax.Array:
    """Run ``corrupt`` with one clean activation patched in at a time; return ``metric``
    (logits [T, V] → scalar) of each run.

    ``point`` is a stream point ("resid_pre", "attn", "resid_mid", "mlp", "resid_post"),
    patched one (layer, position) at a time → [L, T], or "z", one whole head at a time
    (all positions) → [L, H]. One jitted function, vmapped over the masks.
    """
    a = Anatomy.of(model)
    clean, corrupt = validate_tokens(model, clean), validate_tokens(model, corrupt)
    if clean.ndim != 1 or clean.shape != corrupt.shape:
        raise ValueError(
            f"patch_sweep needs two single sequences of one length, got shapes {clean.shape} "
            f"and {corrupt.shape}"
        )
    path, at = _site(a, point)
    points = points_of(model, params, clean)  # the cached trace
    if point == "resid_pre":
        value = jnp.stack([stream_in(a, points, l) for l in range(a.L)])
    else:
        value = points[N.BLOCKS][f"{N.ATTN}.z" if point == "z" else point]
    grid = value.shape[:2]  # (L, T), or (L, H) for z
    n = grid[0] * grid[1]
    tail = (1,) * (value.ndim - 2)  # broadcast over the rest (d; or T and k for a head)
    masks = jnp.eye(n, dtype=value.dtype).reshape(n, *grid, *tail)
    m = patched(model, path, at)

    def run(mask):
        return metric(m(with_patch(params, path, value, mask), jnp.asarray(corrupt)))

    return jax.jit(jax.vmap(run))(masks).reshape(grid)
