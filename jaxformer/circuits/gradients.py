"""Gradient attribution: activation patching's estimate, for every point in one backward pass.

For a metric m of the logits and a point x, clean x_c and corrupt x_r, patching x_r → x_c
changes m by

    Δm ≈ (x_c − x_r) · ∂m/∂x |_corrupt                      attribution patching
    Δm ≈ (x_c − x_r) · (1/S) Σ_s ∂m/∂x |_{α_s}              integrated gradients

where the second averages the gradient at the midpoints α_s = (s + ½)/S of a straight
path from corrupt to clean: of the *inputs*, e_r + α (e_c − e_r), one path for every point
(EAP-IG, Hanna et al. 2024), or of each point itself, x_r + α (x_c − x_r) with the rest
of the pass recomputed (Marks et al. 2024), whose sum over the point is then the real
patching effect of the whole point. The dot product sums over the point's feature axis
(d, or k for a head's result), so a stream point gives [T] and ``"attn.z"`` gives [H, T]
(sum over T for a head's total). Exact when m is linear in the point.

The gradients are taken with respect to zero offsets ``v ↦ v + δ`` spliced in at every
requested point (``core.splice``, one δ per layer), so one ``jax.grad`` gives them all:
no hooks, and the composite is the model's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Param, Params, Repeat, space_at, splice, with_splice
from ..models import validate_tokens
from .edits import _Edit

OFFSET = "delta"
PATHS = ("inputs", "points")


@dataclass(frozen=True, repr=False)
class Offset(_Edit):
    """v ↦ v + δ, δ of the point's full shape (length T): where the gradient is taken."""

    T: int = 1
    name: str = "offset"
    tokenwise = False  # δ differs by position

    def spec(self):
        shape = tuple(self.T if a == "T" else a for a in self.space.shape)
        return {OFFSET: Param(shape, tuple("·" * len(shape)))}

    def apply(self, params, v):
        return v + params[OFFSET].astype(v.dtype)


def attribution_patching(model, params, clean, corrupt, metric: Callable, points) -> dict:
    """{point: (x_c − x_r) · ∂m/∂x at the corrupt run}, [T] or [H, T] per point.
    ``points``: names or globs from ``model.points()`` ("blocks.*.attn.z")."""
    return _attribute(model, params, clean, corrupt, metric, points, ig=None)


def integrated_gradients(
    model, params, clean, corrupt, metric: Callable, points, steps: int = 16, path="inputs"
) -> dict:
    """{point: (x_c − x_r) · the mean of ∂m/∂x along a path from corrupt to clean}, [T] or
    [H, T]. ``path="inputs"``: the embeddings' path, one for every point (EAP-IG);
    ``path="points"``: each point's own, x_r + α (x_c − x_r) with the rest of the pass
    recomputed from it: its sum over the point is then exactly patching the whole point,
    to the midpoint rule's error (one pass per point)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"integrated_gradients: steps must be an int >= 1, got {steps!r}")
    if path not in PATHS:
        raise ValueError(f"integrated_gradients: path must be one of {PATHS}, got {path!r}")
    return _attribute(model, params, clean, corrupt, metric, points, (steps, path))


def _attribute(model: Map, params: Params, clean, corrupt, metric, points, ig):
    clean, corrupt = validate_tokens(model, clean), validate_tokens(model, corrupt)
    if clean.ndim != 1 or clean.shape != corrupt.shape:
        raise ValueError(
            f"attribution needs two single sequences of one length, got shapes {clean.shape} "
            f"and {corrupt.shape}"
        )
    if not callable(metric):
        raise ValueError("attribution: metric must be a function of the logits [T, V] to a scalar")
    names, e = sorted(model.resolve(points)), model.points()[0]  # e: the embeddings
    sites = _sites(model, names)  # splice point → (the names it answers, its layers or None)
    if ig is not None:
        sites.setdefault(e, ([], None))
    probe, T = model, clean.shape[0]
    for at in sites:
        probe = splice(probe, at, Offset(space_at(model, at), T=T), per_layer="*" in at)
    trace = jax.jit(lambda x: model.trace(params, x, points=sorted({*names, e}))[1])
    xc, xr = trace(jnp.asarray(clean)), trace(jnp.asarray(corrupt))
    zero = {at: _zeros(xr, at, ns, L) for at, (ns, L) in sites.items()}
    where = {n: (at, L) for at, (ns, L) in sites.items() for n in ns} | {e: (e, None)}

    def moved(n):
        """The offsets that move point n alone from corrupt to clean."""
        at, L = where[n]
        d = xc[n] - xr[n]
        return zero | {at: d if L is None else zero[at].at[int(n.split(".")[1])].set(d)}

    def m(deltas):
        p = params
        for at, d in deltas.items():
            p = with_splice(p, at, {OFFSET: d})
        return metric(probe(p, jnp.asarray(corrupt)))

    @jax.jit
    def mean_grad(direction, alphas):  # the mean of ∇m at α · direction over the alphas
        g = jax.vmap(lambda a: jax.grad(m)(jax.tree.map(lambda d: a * d, direction)))(alphas)
        return jax.tree.map(lambda x: x.mean(0), g)

    if ig is None:
        grads = dict.fromkeys(names, mean_grad(zero, jnp.zeros(1)))
    else:
        steps, path = ig
        alphas = (jnp.arange(steps) + 0.5) / steps
        if path == "inputs":
            grads = dict.fromkeys(names, mean_grad(moved(e), alphas))
        else:
            grads = {n: mean_grad(moved(n), alphas) for n in names}
    out = {}
    for n in names:
        at, L = where[n]
        g = grads[n][at] if L is None else grads[n][at][int(n.split(".")[1])]
        out[n] = jnp.sum((xc[n] - xr[n]) * g, axis=-1)  # over d (or k)
    return out


def _sites(model: Map, names: list[str]) -> dict[str, tuple[list[str], int | None]]:
    """Each name's splice point: ``"<repeat>.*.<key>"`` for a layer's point (one offset per
    layer: the repeat's L), the name itself outside any repeat (None)."""
    stacks = {m.name: m.L for p, m in model.walk() if isinstance(m, Repeat) and p == m.name}
    sites: dict[str, tuple[list[str], int | None]] = {}
    for n in names:
        head, _, rest = n.partition(".")
        l, _, key = rest.partition(".")
        inside = head in stacks and l.isdigit()
        at = f"{head}.*.{key}" if inside else n
        sites.setdefault(at, ([], stacks[head] if inside else None))[0].append(n)
    return sites


def _zeros(points: dict, at: str, names: list[str], L: int | None) -> jax.Array:
    """The zero offset at a splice point: the point's shape, stacked on L for a layer's."""
    one = points[names[0] if names else at]
    return jnp.zeros(one.shape if L is None else (L, *one.shape), one.dtype)
