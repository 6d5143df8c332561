"""The cached composite: the model's own maps, rewired to read and write a KV cache.

A causal model f: V^T → R^{T×V} is run on a prompt once and then one token at a
time. Of its maps only attention and the positions look beyond the token they act
on, so the cached composite is the same composite, walked map by map, with

    Attention    (x_Td, positions, K, V) ↦ (y_Td, K', V')   k, v written at ``positions``;
                 the query at position p attends to the cache slots s ≤ p
    Positions    x_Td ↦ x_Td + W_pos[positions]
    Repeat       a scan over the stacked params *and* the stacked cache
    the rest     the map itself (embedding, norms, MLPs, unembedding act token by token)

The cache is a pytree filed like the params: ``{"blocks": {"attn": {"k": [L,G,S,k],
"v": [L,G,S,k]}}}`` for one sequence with S slots (batch with ``vmap``, as the model).
GQA stores the G key/value heads only. A fixed S compiles once: slots past a query's
position are masked (−inf), whatever they hold.

    prefill(model, params, prompt_T)          V^T → R^{T×V} × cache      (slots 0..T-1 filled)
    decode_step(model, params, cache, t, p)   cache × V × N → R^V × cache (slot p filled)

Both are pure and traceable (jit them, vmap them); the validated entry is ``generate``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ..core import Compose, Map, Parallel, Repeat, Residual, Scope, Tie, Tokenwise
from ..layers import (
    MLP,
    Attention,
    Embedding,
    LayerNorm,
    LearnedPositions,
    RMSNorm,
    SinusoidalPositions,
    SwiGLU,
    Unembedding,
    sinusoid_table,
)

Cache = dict
# Leaves that act on each token alone: the cached composite applies them unchanged.
TOKENWISE = (Tokenwise, Embedding, Unembedding, LayerNorm, RMSNorm, MLP, SwiGLU)


def context(model: Map) -> int | None:
    """The model's largest T (its domain's limit), or None if it has none."""
    return dict(model.domain.limits).get("T")


def empty_cache(model: Map, size: int, dtype=jnp.float32) -> Cache:
    """A zero cache with ``size`` slots for one sequence."""
    shapes = _cache_shapes(model, size)
    return jax.tree.map(lambda s: jnp.zeros(s, dtype), shapes, is_leaf=_is_shape)


def prefill(model: Map, params, prompt_T: jax.Array, size: int | None = None, dtype=jnp.float32):
    """(logits [T, V], cache) for ``prompt_T`` at positions 0..T-1, in a cache of ``size``
    slots (default: the model's context). Equal to ``model(params, prompt_T)``."""
    size = size or context(model)
    if size is None or size < prompt_T.shape[0]:
        raise ValueError(f"prefill: a cache of {size} slots cannot hold {prompt_T.shape[0]}")
    return step(model, params, empty_cache(model, size, dtype), prompt_T, 0)


def decode_step(model: Map, params, cache: Cache, token: jax.Array, pos: jax.Array):
    """(logits [V], cache') for ``token`` at position ``pos``: the last row of
    ``model(params, prefix + [token])`` when the cache holds the prefix at 0..pos-1."""
    logits_1V, cache = step(model, params, cache, jnp.reshape(token, (1,)), pos)
    return logits_1V[0], cache


def untie(model: Map, params) -> tuple[Map, dict]:
    """A tied composite as its inner one with the tied parameter filled in (W_U = W_Eᵀ):
    a decode loop then transposes W_E once, not at every token."""
    while isinstance(model, Tie):
        model, params = model.f, model.f.own(model.untie(params))
    return model, params


def unstack(model: Map, params):
    """``params`` with each ``Repeat``'s stacked [L, …] leaves split into a tuple of L
    per-layer trees: the same function, with the layers as straight-line code.

    A decode loop splits the weights once, before it starts: a scan over stacked weights
    inside the loop slices (and XLA:CPU re-lays out) every layer's weights at every token.
    """
    if isinstance(model, Repeat):
        return tuple(model.unstack(params).values())
    out = dict(params)
    for c in model.children():
        if c.namespace and c.name in params:
            out[c.name] = unstack(c, params[c.name])
        elif not c.namespace:
            out |= unstack(c, params)
    return out


def step(model: Map, params, cache: Cache, tokens_T: jax.Array, start):
    """The cached composite on a chunk of tokens at positions start..start+T-1."""
    positions = start + jnp.arange(tokens_T.shape[0])
    return _step(model, params, cache, tokens_T, positions)


# -- the cache's shape, map by map --------------------------------------------------------
def _is_shape(x) -> bool:
    return isinstance(x, tuple) and all(isinstance(n, int) for n in x)


def _filed(m: Map, c: Cache) -> Cache:
    """A map's cache as its parent files it: under its name if it opens a namespace."""
    return {m.name: c} if m.namespace and c else c


def _own(m: Map, cache: Cache) -> Cache:
    return cache.get(m.name, {}) if m.namespace else cache


def _cache_shapes(m: Map, S: int) -> Cache:
    if isinstance(m, Attention):
        return {"k": (m.kv_heads, S, m.k), "v": (m.kv_heads, S, m.k)}
    if isinstance(m, Repeat):
        inner = _filed(m.f, _cache_shapes(m.f, S))
        return jax.tree.map(lambda s: (m.L, *s), inner, is_leaf=_is_shape)
    out: Cache = {}
    for c in m.children():
        out |= _filed(c, _cache_shapes(c, S))
    return out


# -- the cached composite, map by map -------------------------------------------------------
# ``layer`` holds the indices of the enclosing Repeats: a cache leaf stays stacked ([L, …])
# in the scan's carry and attention writes its one new row in place, since a scan that
# emits each layer's updated slice would copy the whole cache every step.
@functools.singledispatch
def _step(m: Map, params, cache: Cache, x, positions, layer: tuple = ()):
    """(m's output on the chunk x at ``positions``, m's cache after writing the chunk)."""
    if isinstance(m, TOKENWISE):
        return m(params, x), {}
    raise NotImplementedError(
        f"generate: no cached form for the map {m.name!r} ({type(m).__name__}); "
        "register one with jaxformer.generate.cache._step.register"
    )


def _child(m: Map, params, cache: Cache, x, positions, layer):
    y, c = _step(m, m.own(params), _own(m, cache), x, positions, layer)
    return y, _filed(m, c)


@_step.register
def _(m: Compose, params, cache, x, positions, layer=()):
    out: Cache = {}
    for g in reversed(m.maps):
        x, c = _child(g, params, cache, x, positions, layer)
        out |= c
    return x, out


@_step.register
def _(m: Residual, params, cache, x, positions, layer=()):
    y, c = _child(m.f, params, cache, x, positions, layer)
    return x + y, c


@_step.register
def _(m: Parallel, params, cache, x, positions, layer=()):
    ys, out = [], {}
    for g in m.maps:
        y, c = _child(g, params, cache, x, positions, layer)
        ys.append(y)
        out |= c
    return sum(ys), out


@_step.register
def _(m: Scope, params, cache, x, positions, layer=()):
    return _child(m.f, params, cache, x, positions, layer)


@_step.register
def _(m: Tie, params, cache, x, positions, layer=()):
    return _child(m.f, m.untie(params), cache, x, positions, layer)


@_step.register
def _(m: Repeat, params, cache, x, positions, layer=()):
    if isinstance(params, tuple):  # split by ``unstack``: the layers in straight-line code
        for l, p in enumerate(params):
            x, cache = _child(m.f, p, cache, x, positions, (*layer, l))
        return x, cache

    def one(x_c, p_l):
        p, l = p_l
        return _child(m.f, p, x_c[1], x_c[0], positions, (*layer, l)), None

    return jax.lax.scan(one, (x, cache), (params, jnp.arange(m.L)))[0]


@_step.register
def _(m: LearnedPositions, params, cache, x, positions, layer=()):
    return x + params["W_pos"][positions].astype(x.dtype), {}


@_step.register
def _(m: SinusoidalPositions, params, cache, x, positions, layer=()):
    P = jnp.asarray(sinusoid_table(m.context, m.d), x.dtype)
    return x + P[positions], {}


@_step.register
def _(m: Attention, params, cache, x_Td, positions, layer=()):
    if not m.causal:
        raise NotImplementedError(f"{m.name}: a non-causal attention cannot be decoded")
    q_HTk, k_GTk, v_GTk = m.qkv(params, x_Td, positions)

    def write(C, new_GTk):  # the chunk's rows, at its (contiguous) positions, in this layer
        new = new_GTk.astype(C.dtype).reshape((1,) * len(layer) + new_GTk.shape)
        return jax.lax.dynamic_update_slice(C, new, (*layer, 0, positions[0], 0))

    cache = {"k": write(cache["k"], k_GTk), "v": write(cache["v"], v_GTk)}
    K_GSk, V_GSk = cache["k"][tuple(layer)], cache["v"][tuple(layer)]
    s_HTS = m.scores(q_HTk, K_GSk.astype(q_HTk.dtype))
    seen_TS = jnp.arange(K_GSk.shape[1])[None, :] <= positions[:, None]
    A_HTS = jax.nn.softmax(jnp.where(seen_TS, s_HTS, -jnp.inf), axis=-1)
    return m.out(params, m.mix(A_HTS, V_GSk.astype(x_Td.dtype))), cache
