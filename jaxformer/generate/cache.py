"""The cached composite: the model's own maps, rewired to read and write a KV cache.

A causal model f: V^T → R^{T×V} is run on a prompt once and then one token at a
time. Of its maps only attention and the positions look beyond the token they act
on, so the cached composite is the same composite, each map in its cached form (its
``decode`` face, beside it in its own file):

    Attention    (x_Td, positions, K, V) ↦ (y_Td, K', V')   k, v written at ``positions``;
                 the query at position p attends to the cache slots s ≤ p; a windowed
                 layer keeps a ring of its w slots (written at p mod w, with the positions)
    Positions    x_Td ↦ x_Td + W_pos[positions]
    Repeat       a scan over the stacked params *and* the stacked cache
    tokenwise    the map itself (embedding, norms, MLPs, unembedding act token by token)

The cache is a pytree filed like the params: ``{"blocks": {"attn": {"k": [L,G,k,S],
"v": [L,G,S,k]}}}`` for one sequence with S slots (batch with ``vmap``, as the model;
k is kept transposed, as the scores q Kᵀ read it).
GQA stores the G key/value heads only. A fixed S compiles once: slots past a query's
position are masked (−inf), whatever they hold.

    prefill(model, params, prompt_T)          V^T → R^{T×V} × cache      (slots 0..T-1 filled)
    decode_step(model, params, cache, t, p)   cache × V × N → R^V × cache (slot p filled)

Both are pure and traceable (jit them, vmap them); the validated entry is ``generate``,
which first checks that every map of the model has a cached form (``require``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core import Cache, Map, Repeat
from ..core.stored import check_weights, store


def context(model: Map) -> int | None:
    """The model's largest T (its domain's limit), or None if it has none."""
    return dict(model.domain.limits).get("T")


def empty_cache(model: Map, size: int, dtype=jnp.float32) -> Cache:
    """A zero cache with ``size`` slots for one sequence (k, v in ``dtype``; a leaf given as
    a ShapeDtypeStruct, a ring's positions, in its own dtype)."""

    def zeros(s):
        return (
            jnp.zeros(s.shape, s.dtype)
            if isinstance(s, jax.ShapeDtypeStruct)
            else jnp.zeros(s, dtype)
        )

    return jax.tree.map(zeros, model.cache_in(size), is_leaf=_is_shape)


def _is_shape(x) -> bool:
    shape = isinstance(x, tuple) and all(isinstance(n, int) for n in x)
    return shape or isinstance(x, jax.ShapeDtypeStruct)


def prefill(
    model: Map, params, prompt_T: jax.Array, size: int | None = None, dtype=jnp.float32,
    length=None,
):  # fmt: skip
    """(logits [T, V], cache) for ``prompt_T`` at positions 0..T-1, in a cache of ``size``
    slots (default: the model's context). Equal to ``model(params, prompt_T)``.
    ``length`` n: only the first n tokens are the prompt, the rest padding (``step``)."""
    size = size or context(model)
    if size is None or size < prompt_T.shape[0]:
        raise ValueError(f"prefill: a cache of {size} slots cannot hold {prompt_T.shape[0]}")
    return step(model, params, empty_cache(model, size, dtype), prompt_T, 0, length)


def decode_step(model: Map, params, cache: Cache, token: jax.Array, pos: jax.Array):
    """(logits [V], cache') for ``token`` at position ``pos``: the last row of
    ``model(params, prefix + [token])`` when the cache holds the prefix at 0..pos-1."""
    logits_1V, cache = step(model, params, cache, jnp.reshape(token, (1,)), pos)
    return logits_1V[0], cache


def decode_weights(model: Map, params, weights: str = "float32"):
    """``params`` as a decode loop reads them, made once before the loop: each ``Repeat``'s
    stacked [L, …] leaves split into a tuple of L per-layer trees (the layers then run as
    straight-line code: a scan over stacked weights inside the loop slices every layer's at
    every token), and each leaf's in the layout its cached form reads (``Map.decode_layout``:
    attention's W_Q, W_K, W_V as one matrix, which XLA:CPU would otherwise transpose at
    every token). The same function: ``decode`` takes either.

    ``weights`` ("float32", "bfloat16", "int8"): how each leaf's ``matrices`` are kept
    (``core.stored.store``: bf16, or int8 with a float32 scale per output channel); every
    other param (norms, biases, the embedding tables a token looks up) stays float32."""
    check_weights(weights, "decode_weights: weights")
    if isinstance(model, Repeat):
        layers = model.unstack(params).values()
        return tuple(decode_weights(model._layer(l), p, weights) for l, p in enumerate(layers))
    if not model.children():
        laid = model.decode_layout(params)
        return {n: store(W, weights) if n in model.matrices else W for n, W in laid.items()}
    out = dict(params)
    for c in model.children():
        if c.namespace and c.name in params:
            out[c.name] = decode_weights(c, params[c.name], weights)
        elif not c.namespace:  # it files its children beside it: take theirs alone
            mine = decode_weights(c, params, weights)
            out |= {n: mine[n] for n in c.namespaces() if n in mine}
    return out


def step(model: Map, params, cache: Cache, tokens_T: jax.Array, start, length=None):
    """The cached composite on a chunk of tokens at positions start..start+T-1. With
    ``length`` n the tokens past the first n are padding: they take the position of the
    n-th (start+n-1), so a ring cache never writes them over the window it keeps (a dense
    one writes them at the slots after the prompt, which decoding overwrites)."""
    i = jnp.arange(tokens_T.shape[0])
    positions = start + (i if length is None else jnp.minimum(i, length - 1))
    return model.decode_in(params, cache, tokens_T, positions)
