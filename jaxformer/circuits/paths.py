"""Path expansion: the logits (and attention scores) as a sum of labelled terms.

Freeze what the trace recorded — every attention pattern A^{l,h} and every norm
scale s_t — and the model is linear in what each source writes. The residual
stream is then a sum over paths: a source (the token embedding, the positions,
a bias, an MLP's output) carried through a chain of heads, each acting as

    x ↦ A^{l,h} N_l(x) W_OV^{l,h}          (N_l the frozen norm's linear part, per token)

so for an attention-only model without norms (Elhage et al. 2021)

    logits = x₀W_U + Σ_h A^h x₀ W_OV^h W_U + Σ_{h₂,h₁} A^{h₂}A^{h₁} x₀ W_OV^{h₁} W_OV^{h₂} W_U + …

with x₀ = W_E[t] + W_pos. Each term is labelled by its path, read like a
composite, right to left: ``"embed"`` (the direct path), ``"L0H3∘pos"``,
``"L1H2∘L0H3∘embed"`` (a virtual head), and sources ``"pos"``, ``"L0H1.b_V"``
(A^h 1 b_V W_O), ``"L0.b_O"``, ``"L1.ln1.beta"`` (β read by layer-1 heads),
``"L0.mlp"`` (a whole MLP's output, from the trace), ``"ln_f.beta"`` and ``"b_U"``.

The terms sum to the logits exactly given the frozen patterns and scales (to
float rounding: run under ``jax.enable_x64(True)`` with float64 params for 1e-10).
The number of terms grows as (H+1)^L: this is for small models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..core import Map, Params
from ..layers.positional import rope_angles
from ..models import layout as N
from .anatomy import Anatomy, at_layer, points_of, positions, untied
from .norms import frozen_linear, has_offset, offset

Terms = dict[str, jax.Array]
DIRECT = (N.EMBED, N.POS)


def _heads(a: Anatomy, p: Params, A_HTS: jax.Array, Y_NSd: jax.Array) -> jax.Array:
    """Each head applied to each term: A^h Y_n W_V^h W_O^h.   [N, S, d] → [H, N, T, d]."""
    W_V = jnp.repeat(p["W_V"], a.attn.H // a.attn.kv_heads, axis=0)
    v = jnp.einsum("nsd,hdk->hnsk", Y_NSd, W_V)
    z = jnp.einsum("hts,hnsk->hntk", A_HTS.astype(v.dtype), v)
    return jnp.einsum("hntk,hke->hnte", z, p["W_O"])


def path_labels(a: Anatomy, n_layers: int) -> list[str]:
    """The labels of the stream's terms entering block ``n_layers``, in ``_expand``'s order."""
    labels = [N.EMBED] + ([N.POS] if a.pos is not None else [])
    for l in range(n_layers):
        sources = labels + ([f"L{l}.{N.LN1}.beta"] if has_offset(a.ln1) else [])
        heads = [f"L{l}H{h}" for h in range(a.H)]
        labels = labels + [f"{h}∘{s}" for h in heads for s in sources]
        labels += [f"{h}.b_V" for h in heads] if a.attn.bias else []
        labels += [f"L{l}.b_O"] if a.attn.has_out_bias else []
        if a.mlp is not None:
            labels.append(f"L{l}.{N.MLP}")
    return labels


@functools.partial(jax.jit, static_argnums=(0, 4))
def _expand(a: Anatomy, params: Params, tokens, points, n_layers: int) -> jax.Array:
    """The terms of the stream entering block ``n_layers``, X [N, T, d] (labels:
    ``path_labels``). One compiled function: eagerly, each op would compile on its own."""
    T = tokens.shape[0]
    E, scale = params[N.EMBED]["W_E"], a.embed.scale
    X = (E[tokens] if scale is None else E[tokens] * jnp.asarray(scale, E.dtype))[None]
    P = positions(a, params, T)
    if P is not None:
        X = jnp.concatenate([X, P.astype(X.dtype)[None]])
    blocks = points[N.BLOCKS]
    for l in range(n_layers):
        p = at_layer(params[N.BLOCKS][N.ATTN], l)
        A = blocks[f"{N.ATTN}.pattern"][l]
        p1 = at_layer(params[N.BLOCKS].get(N.LN1, {}), l)
        s1 = blocks[f"{N.LN1}.scale"][l] if a.ln1 is not None else None
        Y = frozen_linear(a.ln1, p1, s1, X)
        if has_offset(a.ln1):
            beta = offset(a.ln1, p1).astype(Y.dtype)
            Y = jnp.concatenate([Y, jnp.broadcast_to(beta, (1, *Y.shape[1:]))])
        parts = [X, _heads(a, p, A, Y).reshape(-1, *X.shape[1:])]
        if a.attn.bias:
            b_V = jnp.repeat(p["b_V"], a.attn.H // a.attn.kv_heads, axis=0)  # [H, k]
            # A^h 1 b_V^h W_O^h: the rows of A sum to 1 up to rounding, summed as the model does
            rows = A.astype(X.dtype).sum(-1)  # [H, T]
            parts += [jnp.einsum("ht,hk,hkd->htd", rows, b_V, p["W_O"])]
        if a.attn.has_out_bias:
            parts += [jnp.broadcast_to(p["b_O"].astype(X.dtype), (1, T, X.shape[-1]))]
        if a.mlp is not None:
            parts.append(blocks[N.MLP][l][None].astype(X.dtype))
        X = jnp.concatenate(parts)
    return X


def stream_terms(
    model: Map, params: Params, tokens, layer: int | None = None, points=None
) -> Terms:
    """The residual stream entering block ``layer`` (default: after the last block, before
    the final norm) as labelled terms, label → [T, d]; they sum to the traced stream."""
    a = Anatomy.of(model)
    a.require("stream_terms", "stream")
    n = a.L if layer is None else layer
    if not 0 <= n <= a.L:
        raise ValueError(f"layer must be in [0, {a.L}], got {layer}")
    points = points_of(model, params, tokens, points)
    X = _expand(a, untied(model, params), jnp.asarray(tokens), points, n)
    return _labelled(path_labels(a, n), X)


def logit_terms(model: Map, params: Params, tokens, points=None) -> Terms:
    """The logits as labelled path terms, label → [T, V]; they sum to the logits."""
    a = Anatomy.of(model)
    a.require("logit_terms", "stream", "logits")
    points, params = points_of(model, params, tokens, points), untied(model, params)
    X = _expand(a, params, jnp.asarray(tokens), points, a.L)
    return readout(a, params, points, path_labels(a, a.L), X)


def readout(a: Anatomy, params: Params, points, labels: list[str], X: jax.Array) -> Terms:
    """Terms of the final stream [N, T, d] through the frozen final norm and the
    unembedding, plus the constants ``"ln_f.beta"`` (β W_U) and ``"b_U"``.   → [T, V] each."""
    Y, consts = _readout(a, params, points, X)
    return _labelled(labels, Y) | consts


def _labelled(labels: list[str], X: jax.Array) -> Terms:
    # X[i] compiles one indexing op for all i; iterating X would compile an unstack of N
    return {label: X[i] for i, label in enumerate(labels)}


@functools.partial(jax.jit, static_argnums=0)
def _readout(a: Anatomy, params: Params, points, X: jax.Array):
    p_f = params.get(N.LN_F, {})
    s_f = points[f"{N.LN_F}.scale"] if a.ln_f is not None else None
    W_U = params[N.UNEMBED]["W_U"].astype(X.dtype)
    T, V = X.shape[1], W_U.shape[1]
    consts = {}
    if has_offset(a.ln_f):
        consts[f"{N.LN_F}.beta"] = jnp.broadcast_to(
            offset(a.ln_f, p_f).astype(X.dtype) @ W_U, (T, V)
        )
    if a.unembed.bias:
        consts["b_U"] = jnp.broadcast_to(params[N.UNEMBED]["b_U"].astype(X.dtype), (T, V))
    return frozen_linear(a.ln_f, p_f, s_f, X) @ W_U, consts


def score_terms(model: Map, params: Params, tokens, layer: int, points=None) -> Terms:
    """Block ``layer``'s pre-softmax scores q^h k^hᵀ/√k split by where q and k come from:

        "direct"  both from the direct sources (embed, pos) and the block's own biases
        "Q"       the query from earlier blocks' writes, the key direct   (Q-composition)
        "K"       the query direct, the key from earlier blocks' writes   (K-composition)
        "QK"      both from earlier blocks' writes

    Each is [H, T, T]; they sum to the scores before the causal mask (RoPE, partial or
    whole, and the attention's scale included). Refused where the scores are no bilinear
    form of the sources: QK-norm, soft-capped scores (``structure.py``).
    """
    a = Anatomy.of(model)
    a.require("score_terms", "stream", "scores")
    if not 0 <= layer < a.L:
        raise ValueError(f"layer must be in [0, {a.L}), got {layer}")
    points = points_of(model, params, tokens, points)
    s = _scores(a, untied(model, params), jnp.asarray(tokens), points, layer)
    return {"direct": s[0, 0], "Q": s[1, 0], "K": s[0, 1], "QK": s[1, 1]}


@functools.partial(jax.jit, static_argnums=(0, 4))
def _scores(a: Anatomy, params: Params, tokens, points, l: int) -> jax.Array:
    """[query from (direct, composed), key from (direct, composed), H, T, T]."""
    X = _expand(a, params, tokens, points, l)
    direct = jnp.array([s in DIRECT for s in path_labels(a, l)], X.dtype)[:, None, None]
    X2 = jnp.stack([(X * direct).sum(0), (X * (1 - direct)).sum(0)])
    p1 = at_layer(params[N.BLOCKS].get(N.LN1, {}), l)
    s1 = points[N.BLOCKS][f"{N.LN1}.scale"][l] if a.ln1 is not None else None
    Y = frozen_linear(a.ln1, p1, s1, X2)
    beta = offset(a.ln1, p1)
    p = at_layer(params[N.BLOCKS][N.ATTN], l)
    q, k = _project(a, p, Y, beta, "Q"), _project(a, p, Y, beta, "K")
    k = jnp.repeat(k, a.attn.H // a.attn.kv_heads, axis=1)
    scale = a.attn.scale or 1 / a.attn.k**0.5
    return jnp.einsum("ahtk,bhsk->abhts", q, k) * jnp.asarray(scale, q.dtype)


def _project(a: Anatomy, p: Params, Y: jax.Array, beta, W: str) -> jax.Array:
    """Query or key vectors of [direct, composed] inputs, the constants on the direct one,
    rotated by RoPE (linear per position, so it distributes over the sum).
    [2, T, d] → [2, H|G, T, k]."""
    W_ = p[f"W_{W}"].astype(Y.dtype)
    y = jnp.einsum("ntd,hdk->nhtk", Y, W_)
    const = jnp.zeros((W_.shape[0], W_.shape[-1]), Y.dtype)  # [H|G, k]
    if beta is not None:
        const = const + beta.astype(Y.dtype) @ W_
    if a.attn.bias:
        const = const + p[f"b_{W}"].astype(Y.dtype)
    y = y.at[0].add(const[:, None, :])
    if a.attn.rope_theta is not None:
        y = _rotate(y, a.attn.rope_theta, a.attn.rotary)
    return y


def _rotate(x: jax.Array, theta: float, r: int) -> jax.Array:
    """RoPE in the input's precision on the first r coordinates of each head: pairs
    (j, j + r/2) rotated by rope_angles, the rest passed through.   [..., T, k]"""
    T = x.shape[-2]
    ang = rope_angles(jnp.arange(T), r, theta).astype(x.dtype)
    cos, sin = jnp.cos(ang), jnp.sin(ang)
    x1, x2, rest = x[..., : r // 2], x[..., r // 2 : r], x[..., r:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], axis=-1)


def group(terms: Terms, key: Callable[[str], str]) -> Terms:
    """Sum the terms whose labels share ``key(label)``, e.g. ``group(t, order)`` by the
    number of heads on the path, or ``group(t, source)`` by where the path starts."""
    out: Terms = {}
    for label, x in terms.items():
        k = key(label)
        out[k] = out[k] + x if k in out else x
    return out


def order(label: str) -> int:
    """The number of heads a path runs through after its source (0 for a source itself)."""
    return label.count("∘")


def source(label: str) -> str:
    """Where a path starts: ``source("L1H2∘L0H3∘embed") == "embed"``."""
    return label.rsplit("∘", 1)[-1]
