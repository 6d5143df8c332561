"""The circuits for every family: each exact identity holds, checked against the model's own
forward pass (the plain ``apply``, not the trace the circuits read), or its entry refuses
with the reason.

    stream   Σ writes = Σ stream_terms = the final stream (before N_f)
    logits   Σ logit_terms = Σ direct_logit_attribution = the logits
    scores   Σ score_terms(l) = the scores (where the mask lets them through)
    fold_ln  the folded model computes the same logits
    W_QK     x_i W_QK x_jᵀ = q_i · k_j (offset 0 under RoPE; at every offset on the
             coordinates a partial rotary leaves alone); refused under QK-norm
    W_OV     head h's write = A^h x W_OV^h

Families not listed in EXPECTED (added later) are held to "holds or refuses with a reason".
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer import Config, build
from jaxformer.circuits import (
    W_OV,
    W_QK,
    Anatomy,
    direct_logit_attribution,
    fold_ln,
    logit_terms,
    score_terms,
    stream_terms,
    token_OV,
    writes,
)
from jaxformer.circuits.anatomy import at_layer, stream_in
from jaxformer.models import layout as N
from jaxformer.models.family import FAMILIES

V, CTX, L, D, H = 37, 16, 2, 16, 4
TOKENS = np.array([1, 5, 36, 0, 7, 1, 5, 36, 2, 9, 4], np.int32)  # T = 11 > every window
TOL = 2e-5  # max |Δ| / max |reference|, float32
CONFIGS = {  # GQA, MQA, windows shorter than T, partial RoPE, k ≠ d/H, biases, tied
    "gpt2": dict(),
    "llama": dict(n_kv_heads=2, d_mlp=24, rope_theta=500.0),
    "gpt_neox": dict(rotary_fraction=0.5),  # the parallel block
    "mistral": dict(n_kv_heads=2, d_mlp=24, sliding_window=3),
    "qwen2": dict(n_kv_heads=1, d_mlp=24, tied=True, sliding_window=5),
    "qwen3": dict(n_kv_heads=2, d_head=6, d_mlp=24, bias=True),
    "olmo2": dict(n_kv_heads=2, d_mlp=24),
    "phi3": dict(n_kv_heads=2, d_mlp=24, rotary_fraction=0.5, sliding_window=4),
}
ALL = ("stream", "logits", "scores", "fold_ln", "W_QK", "W_OV")
EXPECTED = {  # what holds; the rest is refused
    "gpt2": ALL,
    "llama": ALL,
    "gpt_neox": ALL,  # the heads and the MLP both read the block's input: the same sums
    "mistral": ALL,  # a window changes the patterns, frozen in the trace, not the identities
    "qwen2": ALL,
    "qwen3": ("stream", "logits", "fold_ln", "W_OV"),  # QK-norm: no bilinear scores
    "olmo2": ("fold_ln", "W_OV"),  # post-norm: the stream is no sum of the raw writes
    "phi3": ALL,
    "mixtral": ALL,  # a mixture reads its input through W_R, W_gate, W_in: LN folds into all
    "qwen3_moe": ("stream", "logits", "fold_ln", "W_OV"),  # QK-norm, as qwen3
}
KINDS = list(CONFIGS) + sorted(set(FAMILIES) - set(CONFIGS))  # e.g. the Gemma families
REFUSED = {  # a few words each refusal's reason must hold
    ("olmo2", "stream"): "writes ln1_post(…) into the stream at resid_mid (post-norm",
    ("olmo2", "scores"): "post-norm",
    ("olmo2", "W_QK"): "qk_norm='all'",
    ("qwen3", "scores"): "qk_norm='head'",
    ("qwen3", "W_QK"): "qk_norm='head'",
}


def rel(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


def noisy(params, seed=3, scale=0.2):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + scale * rng.standard_normal(x.shape, np.float32), params)


@pytest.fixture(scope="module", params=KINDS)
def family(request):
    kind = request.param
    c = Config(kind, V, CTX, L, D, H, init_std=0.3, **CONFIGS.get(kind, {}))
    model = build(c)
    params = noisy(model.init(jax.random.key(0)))
    y = np.asarray(jax.jit(model)(params, TOKENS))  # the plain forward pass
    points = jax.jit(model.trace)(params, jnp.asarray(TOKENS))[1]
    return kind, model, params, y, points


def identities(model, params, y, points):
    """Each identity's check: a function that asserts it (or raises the entry's refusal)."""
    a = Anatomy.of(model)

    def stream():
        w = writes(model, params, TOKENS, points)
        assert rel(sum(w.values()), stream_in(a, points, a.L)) <= TOL
        terms = stream_terms(model, params, TOKENS, points=points)  # after the last block
        assert rel(sum(terms.values()), stream_in(a, points, a.L)) <= TOL

    def logits():
        assert rel(sum(logit_terms(model, params, TOKENS, points).values()), y) <= TOL
        dla = direct_logit_attribution(model, params, TOKENS, points)
        assert rel(sum(dla.values()), y) <= TOL

    def scores():
        s = sum(score_terms(model, params, TOKENS, 1, points).values())  # the composed layer
        traced = np.asarray(points[N.BLOCKS][f"{N.ATTN}.scores"][1])  # −∞ where masked
        seen = np.isfinite(traced)
        assert seen.sum() > len(TOKENS) and rel(np.asarray(s)[seen], traced[seen]) <= TOL

    def folded():
        m2, p2 = fold_ln(model, params)
        assert rel(jax.jit(m2)(p2, TOKENS), y) <= TOL

    def qk():
        QK = W_QK(model, params)
        for l in range(a.L):
            x, q, k = _qk(a, params, points, l)
            want = np.einsum("htk,hsk->hts", q, k)
            got = np.einsum("td,hde,se->hts", x, np.asarray(QK[l].dense), x)
            if a.attn.rope_theta is None:  # the form at every pair of positions
                assert rel(got, want) <= TOL
                continue
            diag = lambda s: np.diagonal(s, 0, 1, 2)  # offset 0: RoPE turns q_i, k_i alike
            assert rel(diag(got), diag(want)) <= TOL
            r = a.attn.rotary
            if r < a.attn.k:  # the coordinates RoPE leaves alone: every offset
                rest = np.einsum(
                    "td,hde,se->hts", x, np.asarray(W_QK(model, params, "pass")[l].dense), x
                )
                assert rel(rest, np.einsum("htk,hsk->hts", q[..., r:], k[..., r:])) <= TOL

    def ov():
        OV = np.asarray(W_OV(model, params).dense)
        for l in range(a.L):
            p = _no_biases(at_layer(params[N.BLOCKS][N.ATTN], l), "b_V")  # the pattern kept
            x = _attn_input(a, points, l)
            heads = a.attn.heads(p, x)  # z^h W_O^h, the layer's own computation
            A = np.asarray(points[N.BLOCKS][f"{N.ATTN}.pattern"][l])
            assert rel(np.einsum("hts,sd,hde->hte", A, x, OV[l]), heads) <= TOL

    return dict(stream=stream, logits=logits, scores=scores, fold_ln=folded, W_QK=qk, W_OV=ov)


def _no_biases(p, *which):
    """The layer's params with its biases (those named ``which``; all of them) set to 0."""
    off = lambda k: k in which if which else k.startswith("b_")
    return {k: (jnp.zeros_like(v) if off(k) else v) for k, v in p.items()}


def _attn_input(a, points, l):
    """What layer l's attention reads: N_1 of the stream (the stream itself without N_1)."""
    blocks = points[N.BLOCKS]
    return np.asarray(blocks[N.LN1][l] if a.ln1 is not None else stream_in(a, points, l))


def _qk(a, params, points, l):
    """(x, q, k) of layer l, q and k by the attention's own projection (no biases), k per
    query head."""
    x = _attn_input(a, points, l)
    q, k, _ = a.attn.qkv(_no_biases(at_layer(params[N.BLOCKS][N.ATTN], l)), jnp.asarray(x))
    return x, np.asarray(q), np.asarray(a.attn.expand_kv(k))


def test_each_identity_holds_or_is_refused_with_its_reason(family):
    kind, model, params, y, points = family
    holds = []
    if kind == "olmo2":  # the OV circuit through W_U too: the write is normalised first
        with pytest.raises(ValueError, match="token_OV: .*post-norm"):
            token_OV(model, params)
    for name, check in identities(model, params, y, points).items():
        try:
            check()
        except ValueError as e:  # a refusal: one line, naming why
            msg = str(e)
            assert "\n" not in msg and len(msg) > 40, msg
            assert REFUSED.get((kind, name), "") in msg, msg
            continue
        holds.append(name)
    print(f"{kind}: holds {holds}")
    if kind in EXPECTED:
        assert tuple(holds) == EXPECTED[kind]
