"""Expert parallelism: a mixture's experts split over the mesh's ``expert`` axis, each
token sent to its experts' devices and back by all-to-all.

On a mesh whose ``expert`` axis has P devices, each holds E_loc = E/P of the experts (the
rules map ``E`` to ``expert``) and, as every layer sees it, its own N tokens of the batch
(split over data × fsdp × expert). One layer, on every device at once (``shard_map``):

    dispatch    pair p = t·k + j goes to device q = S_tj // E_loc, into slot r_p of the C
                rows it sends q, r_p = its rank among this device's pairs bound for q (in
                pair order); a pair of rank ≥ C is dropped (it adds 0 to y_t)
    all-to-all  send [P·C, d], receive [P·C, d]: from each device, its rows for my experts
    experts     the routed product (``layers/routing.py``) on the received rows, k = 1:
                expert S_tj mod E_loc, weight 1 (0 for an empty slot)
    all-to-all  back, the same exchange reversed; y_t = Σ_j g_tj Y[slot of (t, j)]

C = N·k when the capacity factor c is 0 (no pair is ever dropped: every device may send
every pair to one device) and ⌈c · N·k / P⌉ otherwise (GShard, Switch: c near 1 costs
little memory and compute, and drops the pairs past C when the router is unbalanced);
the trace's ``dropped`` point counts them. The backward pass repeats the exchange: the
rows travel to the experts again (their pre-activations are recomputed, so that what is
saved is per token, as the batch is), dy's rows with them, and the input gradients travel
back; each device's expert gradients are summed over the devices that hold the same
experts (data, fsdp). The all-to-alls of one layer and step, on each device
(``exchange_bytes``, as the compiled program's result bytes: P·C rows each, of which
(P−1)·C arrive from other devices):

    forward   the rows out, their outputs back: 2 · P·C·d floats; the expert ids and weights
    backward  dy out, dx back:                   2 · P·C·d floats (the rows' second exchange
              is the forward's: XLA merges the two identical all-to-alls)

Inside a ``vmap`` over sequences (the layers map one sequence) a batch is dispatched as
one set of B·T tokens, as in ``routing.routed``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from ..layers import routing as R
from . import rules

AXIS = "expert"


def capacity(N: int, k: int, P_: int, factor: float) -> int:
    """C: the rows each device sends each expert device, N tokens of k pairs each."""
    return N * k if factor == 0 else min(N * k, math.ceil(factor * N * k / P_))


def exchange_bytes(N: int, k: int, d: int, P_: int, factor: float, itemsize: int) -> int:
    """The result bytes of one layer's all-to-alls in a forward and backward pass on one
    device of N tokens (the model above): 4 exchanges of rows, 1 of (int32 id, weight)."""
    rows = P_ * capacity(N, k, P_, factor)
    return rows * (4 * d * itemsize + 4 + itemsize)


def _plan(chosen, P_: int, E_loc: int, C: int):
    """(slot of each pair [A] (P·C: dropped), pair of each slot [P·C] (A: empty))."""
    A = chosen.size
    dest = chosen.reshape(-1) // E_loc
    order = jnp.argsort(dest, stable=True)  # sorted position → pair
    count = jnp.sum(dest[:, None] == jnp.arange(P_), 0, dtype=jnp.int32)
    first = jnp.cumsum(count) - count
    r = jnp.argsort(order) - first[dest]  # each pair's rank among those bound for its device
    slot = jnp.where(r < C, dest * C + r, P_ * C)
    q, o = jnp.divmod(jnp.arange(P_ * C), C)
    pair = jnp.where(o < count[q], order[jnp.clip(first[q] + o, 0, A - 1)], A)
    return slot, pair


def _pad(a):
    return jnp.concatenate([a, jnp.zeros((1, *a.shape[1:]), a.dtype)])


def _exchange(a):
    """Chunk q of P (of the leading axis) to device q; chunk q of the result from q."""
    return jax.lax.all_to_all(a, AXIS, 0, 0, tiled=True)


@functools.cache
def expert_parallel(mesh: Mesh, E: int, factor: float = 0.0):
    """(W, x [N, d], g [N, k], S [N, k]) ↦ (y [N, d], kept [N, k]): the routed product of
    E experts over ``mesh``'s expert axis, with its VJP and its batching rule."""
    P_ = mesh.shape[AXIS]
    if E % P_:
        raise ValueError(f"{E} experts do not split over expert={P_} devices; choose a divisor")
    E_loc = E // P_
    # the devices that hold the same experts and other tokens (a psum over none is a no-op
    # that XLA still emits)
    other = tuple(a for a in rules.BATCH if a != AXIS and mesh.shape[a] > 1)
    tok, w_spec = P(rules.BATCH), P(AXIS)

    def sizes(x, chosen):
        C = capacity(x.shape[0], chosen.shape[1], P_, factor)
        return C, R.tile_rows(P_ * C, E_loc)

    def dispatch(x, chosen):
        """(slot of each pair, the received rows X, their local experts e and weights w)."""
        (N, _), k = x.shape, chosen.shape[1]
        C, b = sizes(x, chosen)
        slot, pair = _plan(chosen, P_, E_loc, C)
        full = pair < N * k
        local = jnp.where(full, _pad(chosen.reshape(-1))[pair] % E_loc, 0)
        X, e, w = map(_exchange, (_pad(x)[jnp.minimum(pair // k, N)], local, full.astype(x.dtype)))
        return slot, pair, X, e[:, None], w[:, None], b

    def fwd_device(W, x, g, chosen):
        (N, _), k = x.shape, chosen.shape[1]
        slot, _, X, e, w, b = dispatch(x, chosen)
        Y, _ = R.forward(W, X, w, e, E_loc, b)
        Yp = _pad(_exchange(Y))[slot].reshape(N, k, -1)  # each pair's output (0: dropped)
        return jnp.einsum("tk,tkd->td", g, Yp), slot.reshape(N, k) < Y.shape[0], Yp

    def bwd_device(W, x, g, chosen, Yp, dy):
        # the received rows and the experts' pre-activations are recomputed (a second
        # exchange of x): what is saved is per token, as the batch is, so a batch's
        # residuals are the batch's (the ``vmap`` rule below)
        (N, _), k = x.shape, chosen.shape[1]
        slot, pair, X, e, w, b = dispatch(x, chosen)
        _, res = R.forward(W, X, w, e, E_loc, b)
        dg = jnp.einsum("tkd,td->tk", Yp, dy)
        dY = _pad(g.reshape(-1))[pair][:, None] * _pad(dy)[jnp.minimum(pair // k, N)]
        dW, dX, _ = R.backward(W, X, w, e, res, _exchange(dY), E_loc, b)
        dx = _pad(_exchange(dX))[slot].reshape(N, k, -1).sum(1)
        return (jax.lax.psum(dW, other) if other else dW), dx, dg

    W_specs = dict.fromkeys(R.EXPERTS, w_spec)
    fwd_map = jax.shard_map(
        fwd_device, mesh=mesh, in_specs=(W_specs, tok, tok, tok), out_specs=(tok, tok, tok)
    )
    bwd_map = jax.shard_map(  # dW is whole over the axes of size 1 that ``other`` leaves out:
        bwd_device, mesh=mesh, in_specs=(W_specs, tok, tok, tok, tok, tok),  # no vma check
        out_specs=(W_specs, tok, tok), check_vma=False,
    )  # fmt: skip
    S = math.prod(mesh.shape[a] for a in rules.BATCH)

    def whole(*a):  # N tokens → a multiple of S: padding tokens of gate 0, after the real ones
        return [jnp.pad(v, [(0, -v.shape[0] % S)] + [(0, 0)] * (v.ndim - 1)) for v in a]

    def fwd_tokens(W, x, g, c):
        return tuple(a[: len(x)] for a in fwd_map(W, *whole(x, g, c)))

    def bwd_tokens(W, x, g, c, Yp, dy):
        dW, dx, dg = bwd_map(W, *whole(x, g, c, Yp, dy))
        return dW, dx[: len(x)], dg[: len(x)]

    return _batched(fwd_tokens, bwd_tokens)


def _batched(fwd_map, bwd_map):
    """``fwd_map``/``bwd_map`` as one differentiable function whose ``vmap`` over a batch
    of sequences is a call on the batch's tokens (as ``routing.routed``): custom_vmap for
    each, custom_vjp joining them."""
    flat = lambda a: a.reshape(-1, *a.shape[2:])  # [B, T, …] → [B·T, …]

    def check(batched):  # the experts shared, every token argument batched
        W, *tokens = batched
        if any(jax.tree.leaves(W)) or not all(tokens):
            raise NotImplementedError("expert parallelism maps a batch of tokens, not of experts")

    @custom_vmap
    def fwd(W, x, g, c):
        return fwd_map(W, x, g, c)

    @fwd.def_vmap
    def _(size, batched, W, x, g, c):
        check(batched)
        out = fwd_map(W, flat(x), flat(g), flat(c))
        return tuple(a.reshape(*x.shape[:2], *a.shape[1:]) for a in out), (True,) * 3

    @custom_vmap
    def bwd(W, x, g, c, Yp, dy):
        return bwd_map(W, x, g, c, Yp, dy)

    @bwd.def_vmap
    def _(size, batched, W, x, g, c, Yp, dy):
        check(batched)
        dW, dx, dg = bwd_map(W, *map(flat, (x, g, c, Yp, dy)))  # dW: Σ over the batch
        out = (dW, dx.reshape(x.shape), dg.reshape(g.shape))
        return out, (jax.tree.map(lambda _: False, dW), True, True)

    @jax.custom_vjp
    def product(W, x, g, c):
        y, kept, _ = fwd(W, x, g, c)
        return y, kept

    def product_fwd(W, x, g, c):
        y, kept, Yp = fwd(W, x, g, c)
        return (y, kept), (W, x, g, c, Yp)

    def product_bwd(saved, cotangents):
        return (*bwd(*saved, cotangents[0]), None)  # the chosen experts: no cotangent

    product.defvjp(product_fwd, product_bwd)
    return product
