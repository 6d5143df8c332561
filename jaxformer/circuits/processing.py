"""Weight processing: reparametrisations that leave the model's function unchanged.

Each takes ``(model, params)`` and returns a new ``(model, params)`` computing the
same function (``center_unembed``: the same log-probabilities), with the weights
rearranged so the circuits read more plainly (TransformerLens' processing):

    fold_ln                 N(x) W = (P x · s) (diag γ W) + β W: γ and β move into the
                            weights that read the norm, which becomes ``Normalise``
    center_writing_weights  every reader of the stream centers it first (LayerNorm),
                            so what each writer adds along 1 is never read: remove it
    center_unembed          logits + c·1 have the same softmax: W_U, b_U mean-free over V
    fold_value_biases       Σ_h A^h 1 b_V^h W_O^h = 1 Σ_h b_V^h W_O^h (rows of A sum to 1):
                            the value biases become part of b_O

A tied unembedding (W_U = W_Eᵀ) is untied first when a transform changes W_U or W_E.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ..core import Map, Params, tokenwise, untie
from ..layers import Normalise
from ..models import layout as N
from .anatomy import Anatomy
from .norms import gain, is_centered, is_norm

ATTN, MLP = N.at(N.BLOCKS, N.ATTN), N.at(N.BLOCKS, N.MLP)


def _with(tree: Params, path: str, **leaves) -> Params:
    """A copy of ``tree`` with the leaves under ``path`` (f"{N.BLOCKS}/{N.ATTN}") updated."""
    head, _, rest = path.partition("/")
    sub = dict(tree.get(head, {}))
    return {**tree, head: _with(sub, rest, **leaves) if rest else {**sub, **leaves}}


def _fold(norm: Map, p_norm: Params, W: jnp.ndarray, w: str, g: str) -> tuple:
    """W' = diag(γ) W and Δb = β W, with d the axis W reads (einsum subscripts ``w``, ``g``;
    γ is the norm's gain: 1 + γ for Gemma's)."""
    W_new = jnp.einsum(f"{g},{w}->{w}", gain(norm, p_norm), W)
    beta = p_norm.get("beta")
    db = None if beta is None else jnp.einsum(f"{g},{w}->{w.replace('d', '')}", beta, W)
    return W_new, db


def _plain(norm: Map) -> Map:
    """The norm without its affine part (same name, so the trace keeps its keys)."""
    return tokenwise(norm.plain())


def _can_take_bias(m: Map) -> bool:
    """Whether the layer has an input bias it can switch on (a ``bias`` field)."""
    return "bias" in {f.name for f in dataclasses.fields(m)}


def _zero_biases(m: Map, L: int) -> dict:
    """Zero biases for the L stacked copies of ``m`` (a map whose bias was just switched on)."""
    return {k: jnp.zeros((L, *v.shape)) for k, v in m.spec().items() if k.startswith("b_")}


def fold_ln(model: Map, params: Params) -> tuple[Map, Params]:
    """Fold every norm's γ and β into the weights that read it; the norms become
    ``Normalise`` (center and scale only). Biases are switched on where β needs them."""
    a = Anatomy.of(model)
    for norm in (a.ln1, a.ln2, a.ln_f):
        if norm is not None and (isinstance(norm, Normalise) or not is_norm(norm)):
            raise ValueError(f"fold_ln: {norm.name!r} is {type(norm).__name__}, already folded")
    if a.ln_f is not None:
        model, params = untie(model, params)
    if a.ln1 is not None:
        model, params = _fold_ln1(model, params, a)
    if a.ln2 is not None:
        model, params = _fold_ln2(model, params, a)
    if a.ln_f is not None:
        W_U, db = _fold(a.ln_f, params[N.LN_F], params[N.UNEMBED]["W_U"], "dv", "d")
        leaves = {"W_U": W_U}
        if db is not None:
            leaves["b_U"] = params[N.UNEMBED].get("b_U", 0.0) + db
            model = model.replace(N.UNEMBED, dataclasses.replace(a.unembed, bias=True))
        params = _with(params, N.UNEMBED, **leaves) | {N.LN_F: {}}
        model = model.replace(N.LN_F, _plain(a.ln_f))
    return model, params


def _fold_ln1(model: Map, params: Params, a: Anatomy) -> tuple[Map, Params]:
    p, p_ln = params[N.BLOCKS][N.ATTN], params[N.BLOCKS][N.LN1]
    attn = a.attn
    if "beta" in p_ln and not attn.bias:
        attn = dataclasses.replace(attn, bias=True)
        p = {**p, **_zero_biases(attn, a.L)}
        model = model.replace(ATTN, attn)
    leaves = {}
    for name in ("Q", "K", "V"):
        leaves[f"W_{name}"], db = _fold(a.ln1, p_ln, p[f"W_{name}"], "lhdk", "ld")
        if db is not None:
            leaves[f"b_{name}"] = p[f"b_{name}"] + db
    params = _with(
        _with(params, f"{N.BLOCKS}/{N.ATTN}", **{**p, **leaves}), N.BLOCKS, **{N.LN1: {}}
    )
    return model.replace(N.at(N.BLOCKS, N.LN1), _plain(a.ln1)), params


def _fold_ln2(model: Map, params: Params, a: Anatomy) -> tuple[Map, Params]:
    p, p_ln = params[N.BLOCKS][N.MLP], params[N.BLOCKS][N.LN2]
    mlp = a.mlp
    if not hasattr(mlp, "reads"):
        raise ValueError(
            f"fold_ln: {type(mlp).__name__} does not say which matrices read its input; "
            "give it a `reads` attribute (e.g. reads = ('W_in',))"
        )
    if "beta" in p_ln:
        if not _can_take_bias(mlp):
            raise ValueError(f"fold_ln: {type(mlp).__name__} has no input bias to take β")
        if not mlp.bias:
            mlp = dataclasses.replace(mlp, bias=True)
            p = {**p, **_zero_biases(mlp, a.L)}
            model = model.replace(MLP, tokenwise(mlp))
    leaves, spec = {}, mlp.spec()
    for W in mlp.reads:  # the subscripts from the parameter's own axes: d wherever it is
        axes = "l" + "".join(spec[W].axes).lower()  # "ldm"; "ledm" for a mixture's experts
        leaves[W], db = _fold(a.ln2, p_ln, p[W], axes, "ld")
        if db is not None:
            leaves["b_in"] = p["b_in"] + db
    params = _with(_with(params, f"{N.BLOCKS}/{N.MLP}", **{**p, **leaves}), N.BLOCKS, **{N.LN2: {}})
    return model.replace(N.at(N.BLOCKS, N.LN2), _plain(a.ln2)), params


def _uncentered_readers(a: Anatomy) -> list[str]:
    """The maps reading the stream that do not center it first."""
    readers = {N.at(N.BLOCKS, N.LN1): a.ln1, N.LN_F: a.ln_f}
    readers |= {N.at(N.BLOCKS, N.LN2): a.ln2} if a.mlp else {}
    return [k for k, n in readers.items() if n is None or not is_centered(n)]


def center_writing_weights(model: Map, params: Params) -> tuple[Map, Params]:
    """Remove the mean over d from everything that writes to the residual stream
    (W_E, W_pos, W_O, b_O, W_out, b_out). Valid when every reader centers its input:
    LayerNorm (folded or not) before attention, MLP and unembedding."""
    a = Anatomy.of(model)
    bad = _uncentered_readers(a)
    if bad:
        raise ValueError(
            f"center_writing_weights: {bad} do not center the stream (RMSNorm or no norm), "
            "so the mean of a write is read there; it applies to LayerNorm models only"
        )
    model, params = untie(model, params)
    c = lambda W: W - W.mean(-1, keepdims=True)
    params = _with(params, N.EMBED, W_E=c(params[N.EMBED]["W_E"]))
    if "W_pos" in params.get(N.POS, {}):
        params = _with(params, N.POS, W_pos=c(params[N.POS]["W_pos"]))
    p = params[N.BLOCKS][N.ATTN]
    params = _with(params, f"{N.BLOCKS}/{N.ATTN}", **{k: c(p[k]) for k in ("W_O", "b_O") if k in p})
    if a.mlp is not None:
        p = params[N.BLOCKS][N.MLP]
        params = _with(
            params, f"{N.BLOCKS}/{N.MLP}", **{k: c(p[k]) for k in ("W_out", "b_out") if k in p}
        )
    return model, params


def center_unembed(model: Map, params: Params) -> tuple[Map, Params]:
    """W_U and b_U made mean-free over the vocabulary: each position's logits shift by a
    constant, so the log-probabilities are unchanged."""
    model, params = untie(model, params)
    p = params[N.UNEMBED]
    return model, _with(
        params, N.UNEMBED, **{k: v - v.mean(-1, keepdims=True) for k, v in p.items()}
    )


def fold_value_biases(model: Map, params: Params) -> tuple[Map, Params]:
    """b_O ← b_O + Σ_h b_V^h W_O^h and b_V ← 0 (a no-op for a model without biases)."""
    a = Anatomy.of(model)
    if not a.attn.bias:
        return model, params
    p = params[N.BLOCKS][N.ATTN]
    if not a.attn.has_out_bias:  # q, k, v biases only (Qwen2): b_O switched on, from zero
        model = model.replace(ATTN, dataclasses.replace(a.attn, out_bias=True))
    b_V = a.attn.expand_kv(p["b_V"].swapaxes(0, 1)).swapaxes(0, 1)  # [L, G, k] → [L, H, k]
    b_O = p.get("b_O", 0.0) + jnp.einsum("lhk,lhkd->ld", b_V, p["W_O"])
    return model, _with(params, f"{N.BLOCKS}/{N.ATTN}", b_O=b_O, b_V=jnp.zeros_like(p["b_V"]))


def process_weights(model: Map, params: Params) -> tuple[Map, Params]:
    """All four, in order; centering the writes only where the norms center (LayerNorm)."""
    model, params = fold_ln(model, params)
    if not _uncentered_readers(Anatomy.of(model)):
        model, params = center_writing_weights(model, params)
    model, params = center_unembed(model, params)
    return fold_value_biases(model, params)
