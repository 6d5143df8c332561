"""The routed product of a mixture of experts: only the chosen experts compute.

    (W, x [N, d], g [N, k], S [N, k]) ↦ y,   y_t = Σ_j g_tj E_{S_tj}(x_t),
    E_e(u) = (silu(u W_gate^e) ⊙ u W_in^e) W_out^e

The N·k (token, expert) pairs are sorted by expert into tiles of b rows, each group padded
to whole tiles, so every tile is one expert's: X [n, b, d] times that expert's matrices
(gathered per tile), T·k rows plus the padding computed. The layout is two index maps,
both permutations (with the padding rows pointing at a zero row):

    row[p]    the tiled row of pair p = t·k + j
    pair[r]   the pair of tiled row r (N·k for a padding row)

so the product reads X = x[pair // k], y_t = Σ_j g_tj Y[row[t·k + j]], and its VJP reads the
same maps the other way: gathers only. XLA:CPU runs a scatter as a loop over its rows, and
autodiff of a gather is a scatter-add; so the backward pass is written out here.

``jax.lax.ragged_dot`` would be the grouped product, but XLA's CPU lowering of it masks
every group over every row (E× the work).

A batch routed together: the model maps one sequence, a batch is ``vmap`` of it. Routed per
sequence, the tiles would be small (T·k/E rows) and each would gather its matrices once per
sequence. Every token's output reads that token alone, so a batch is routed as one set of
B·T tokens: the same values, larger tiles. ``custom_vmap`` states that rule for the product
and for its VJP, and ``custom_vjp`` joins the two (a custom_vmap function has no
reverse-mode derivative of its own).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

EXPERTS = ("W_gate", "W_in", "W_out")


def layout(chosen, E: int, b: int):
    """(row [N·k], pair [R], the expert of each tile [n]) for tiles of b rows, R = n·b rows:
    n = ⌈N·k/b⌉ + min(E, N·k) bounds the tiles (each nonempty group wastes < one)."""
    N, k = chosen.shape
    A = N * k
    n = -(-A // b) + min(E, A)
    expert = chosen.reshape(-1)
    order = jnp.argsort(expert, stable=True)  # sorted position → pair
    rank = jnp.argsort(order)  # pair → sorted position: the inverse permutation
    count = jnp.sum(expert[:, None] == jnp.arange(E), 0, dtype=jnp.int32)
    padded = -(-count // b) * b
    first = jnp.cumsum(count) - count  # each group's first sorted position
    start = jnp.cumsum(padded) - padded  # and its first tiled row
    row = start[expert] + rank - first[expert]
    tile_expert = jnp.searchsorted(jnp.cumsum(padded), jnp.arange(n) * b, side="right")
    tile_expert = jnp.minimum(tile_expert, E - 1)  # tiles past the last group: padding
    r = jnp.arange(n * b)
    e = tile_expert[r // b]
    o = r - start[e]
    real = (o >= 0) & (o < count[e])
    pair = jnp.where(real, order[jnp.clip(first[e] + o, 0, A - 1)], A)
    return row, pair, tile_expert


def tile_rows(pairs: int, E: int) -> int:
    """b: a power of two near a quarter of the mean group size pairs/E, in [8, 128]: the
    padding (< b rows per nonempty group, and the static bound counts a whole tile for
    every group) then costs ≤ ~25% more rows, and a tile is still a matrix product rather
    than a vector one."""
    quarter = max(1, pairs // (4 * E))
    return min(128, max(8, 1 << (quarter - 1).bit_length()))


def _padded(a):
    """``a`` with a zero row appended: the row that padding reads."""
    return jnp.concatenate([a, jnp.zeros((1, *a.shape[1:]), a.dtype)])


def forward(W, x, g, chosen, E: int, b: int):
    """(y [N, d], the residuals of ``backward``: each pair's pre-activations H1, H2 [N, k, m]
    and output Y [N, k, d], in token order, so that a batch's residuals are the batch's)."""
    (N, d), k = x.shape, chosen.shape[1]
    row, pair, te = layout(chosen, E, b)
    n = te.shape[0]
    Wg, Wi, Wo = (W[w].astype(x.dtype)[te] for w in EXPERTS)  # [n, ·, ·]
    X = _padded(x)[jnp.minimum(pair // k, N)].reshape(n, b, d)
    H1 = jnp.einsum("nbd,ndm->nbm", X, Wg)
    H2 = jnp.einsum("nbd,ndm->nbm", X, Wi)
    Y = jnp.einsum("nbm,nmd->nbd", jax.nn.silu(H1) * H2, Wo).reshape(n * b, d)
    by_pair = lambda a: a.reshape(n * b, -1)[row].reshape(N, k, -1)  # tiled rows → pairs
    Yp = by_pair(Y)
    return jnp.einsum("tk,tkd->td", g, Yp), (by_pair(H1), by_pair(H2), Yp)


def backward(W, x, g, chosen, res, dy, E: int, b: int):
    """(dW, dx, dg) of ``forward`` at cotangent dy: gathers through the same maps."""
    H1p, H2p, Yp = res
    N, k, d = Yp.shape
    row, pair, te = layout(chosen, E, b)
    n, dt = te.shape[0], dy.dtype
    tiled = lambda a: _padded(a.reshape(N * k, -1))[pair].reshape(n, b, -1)  # pairs → rows
    token = jnp.minimum(pair // k, N)
    X = _padded(x)[token].reshape(n, b, d)
    H1, H2 = tiled(H1p), tiled(H2p)
    dg = jnp.einsum("tkd,td->tk", Yp, dy)
    dY = (_padded(g.reshape(-1))[pair][:, None] * _padded(dy)[token]).reshape(n, b, d)
    Wg, Wi, Wo = (W[w].astype(dt)[te] for w in EXPERTS)
    s = jax.nn.sigmoid(H1)
    silu = H1 * s
    dh = jnp.einsum("nbd,nmd->nbm", dY, Wo)
    dH1, dH2 = dh * H2 * s * (1 + H1 * (1 - s)), dh * silu  # silu' = s (1 + u (1 − s))
    dX = jnp.einsum("nbm,ndm->nbd", dH1, Wg) + jnp.einsum("nbm,ndm->nbd", dH2, Wi)
    dx = dX.reshape(n * b, d)[row].reshape(N, k, d).sum(1)
    to_expert = (te[:, None] == jnp.arange(E)).astype(dt)  # [n, E]: each tile's expert
    dW = {
        "W_gate": jnp.einsum("ne,nbd,nbm->edm", to_expert, X, dH1),
        "W_in": jnp.einsum("ne,nbd,nbm->edm", to_expert, X, dH2),
        "W_out": jnp.einsum("ne,nbm,nbd->emd", to_expert, silu * H2, dY),
    }
    return {w: dW[w].astype(W[w].dtype) for w in EXPERTS}, dx, dg


@functools.cache
def routed(E: int, tile_rows):
    """The routed product of E experts, tiles of ``tile_rows(N)`` rows, as a function
    (W, x, g, S) ↦ y with its VJP and its batching rule."""
    flat = lambda a: a.reshape(-1, *a.shape[2:])  # [B, T, …] → [B·T, …]
    unbatched = lambda tree: not any(jax.tree.leaves(tree))

    def each(fn, batched, *args):  # any batching but a plain batch of tokens: vmap as it is
        return jax.vmap(fn, in_axes=jax.tree.map(lambda b: 0 if b else None, batched))(*args)

    def fwd_(W, x, g, c):
        return forward(W, x, g, c, E, tile_rows(x.shape[0]))

    @custom_vmap
    def fwd_v(W, x, g, c):
        return fwd_(W, x, g, c)

    @fwd_v.def_vmap
    def _(size, batched, W, x, g, c):
        if not (unbatched(batched[0]) and all(batched[1:])):
            out = each(fwd_, batched, W, x, g, c)
        else:
            y, res = fwd_(W, flat(x), flat(g), flat(c))  # the batch's tokens as one set
            unflat = lambda a: a.reshape(*x.shape[:2], *a.shape[1:])  # residuals by token
            out = (y.reshape(x.shape), jax.tree.map(unflat, res))
        return out, jax.tree.map(lambda _: True, out)

    def bwd_(W, x, g, c, res, dy):
        return backward(W, x, g, c, res, dy, E, tile_rows(x.shape[0]))

    @custom_vmap
    def bwd_v(W, x, g, c, res, dy):
        return bwd_(W, x, g, c, res, dy)

    @bwd_v.def_vmap
    def _(size, batched, W, x, g, c, res, dy):
        if not (unbatched(batched[0]) and all(jax.tree.leaves(batched[1:]))):
            out = each(bwd_, batched, W, x, g, c, res, dy)
            return out, jax.tree.map(lambda _: True, out)
        flat_res = jax.tree.map(flat, res)
        dW, dx, dg = bwd_(W, flat(x), flat(g), flat(c), flat_res, flat(dy))  # dW: Σ over batch
        out = (dW, dx.reshape(x.shape), dg.reshape(g.shape))
        return out, (jax.tree.map(lambda _: False, dW), True, True)

    @jax.custom_vjp
    def product(W, x, g, c):
        return fwd_v(W, x, g, c)[0]

    def product_fwd(W, x, g, c):
        y, res = fwd_v(W, x, g, c)
        return y, (W, x, g, c, res)

    def product_bwd(saved, dy):
        return (*bwd_v(*saved, dy), None)  # the chosen experts: integers, no cotangent

    product.defvjp(product_fwd, product_bwd)
    return product
