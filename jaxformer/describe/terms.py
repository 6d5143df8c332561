"""Each map's own term: its formula (unicode and LaTeX) and its FLOPs per token.

``TERMS`` is a registry keyed by class (``term_of`` follows the MRO, so subclasses
inherit their parent's term); the layer files stay free of presentation code. A term
covers the map's *own* work only: a combinator's children are described by their
own terms, and the chain (``chain.py``) adds them up.

FLOPs are those of the forward pass, per token of a sequence of length T:
2 per multiply–add of a matrix product, 1 per elementwise arithmetic operation
(an add, a product, a max, a select), and 0 for transcendentals (exp, tanh, erf,
rsqrt), which XLA's ``cost_analysis`` reports apart as ``"transcendentals"``.
Attention computes all T×T scores: the causal mask is applied, not exploited.

LaTeX lines use only what matplotlib's mathtext and MathJax both read
(no ``\\text``), so a formula renders in a notebook and without a TeX install.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp

from ..core import Compose, Map, Parallel, Repeat, Residual, Scope, Space, Tie, Tokenwise
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
)


@dataclass(frozen=True)
class Term:
    """A map's formula as lines of unicode ``text`` and of LaTeX ``tex``, and the FLOPs
    per token of its own work (``None`` when unknown)."""

    text: tuple[str, ...]
    tex: tuple[str, ...]
    flops: int | None = 0


TermFn = Callable[[Map, int, str], Term]  # (map, T, input variable) → its term
TERMS: dict[type, TermFn] = {}


def term(*types: type) -> Callable[[TermFn], TermFn]:
    """Register a term function for ``types`` (a decorator)."""

    def register(fn: TermFn) -> TermFn:
        for t in types:
            TERMS[t] = fn
        return fn

    return register


def term_of(m: Map, T: int, x: str = "x") -> Term:
    """The term of ``m`` at sequence length ``T``, its input named ``x``."""
    for cls in type(m).__mro__:
        if cls in TERMS:
            return TERMS[cls](m, T, x)
    name = type(m).__name__
    return Term((f"(no term registered for {name})",), (rf"\mathrm{{{_escape(name)}}}",), None)


# -- names -------------------------------------------------------------------------


def tex_name(name: str) -> str:
    """A map's name in LaTeX: ``resid_mid`` → ``\\mathrm{resid\\_mid}``; ∘ → ``\\circ``."""
    return r"\circ ".join(rf"\mathrm{{{_escape(p)}}}" for p in name.split("∘"))


def _escape(word: str) -> str:
    return word.replace("_", r"\_")


_GREEK = {"gamma": r"\gamma", "beta": r"\beta"}


def tex_param(name: str) -> str:
    """A parameter's symbol: ``W_Q`` → ``W_{Q}``, ``b_in`` → ``b_{\\mathrm{in}}``, gamma → γ."""
    if name in _GREEK:
        return _GREEK[name]
    base, _, sub = name.partition("_")
    if not sub:
        return rf"\mathrm{{{base}}}" if len(base) > 1 else base
    sub = sub if len(sub) == 1 else rf"\mathrm{{{_escape(sub)}}}"
    return f"{base}_{{{sub}}}"


def label(m: Map) -> tuple[str, str]:
    """How ``m`` is named inside another map's formula: (text, tex)."""
    if isinstance(m, Tokenwise | Tie):
        return label(m.f)
    if isinstance(m, Compose) and m.name == "∘".join(c.name for c in m.maps):
        parts = [label(c) for c in m.maps]
        return (
            "(" + " ∘ ".join(t for t, _ in parts) + ")",
            "(" + r" \circ ".join(t for _, t in parts) + ")",
        )
    return m.name, tex_name(m.name)


def tex_number(v: float) -> str:
    """``1e-05`` → ``10^{-5}``; other numbers as Python writes them (``%g``)."""
    e = math.log10(v) if v > 0 else 0.5
    return f"10^{{{round(e)}}}" if e == round(e) and abs(e) >= 3 else f"{v:g}"


def per_token(s: Space) -> int:
    """Coordinates of one token's slice of a point of ``s`` (the named axes dropped)."""
    return math.prod(a for a in s.shape if isinstance(a, int))


# -- layers --------------------------------------------------------------------------


@term(Embedding)
def _embedding(m: Embedding, T: int, x: str) -> Term:
    return Term(("t ↦ x,  x_i = W_E[t_i]",), (r"t \mapsto x,\ x_i = W_E[t_i]",), 0)


@term(LearnedPositions)
def _learned_positions(m: LearnedPositions, T: int, x: str) -> Term:
    return Term(
        (f"{x} ↦ ({x}_i + W_pos[i])_i",),
        (rf"{x} \mapsto ({x}_i + W_{{\mathrm{{pos}}}}[i])_i",),
        m.d,
    )


@term(SinusoidalPositions)
def _sinusoidal_positions(m: SinusoidalPositions, T: int, x: str) -> Term:
    f, F = f"i / 10000^(2j/{m.d})", rf"i / 10000^{{2j/{m.d}}}"
    return Term(
        (f"{x} ↦ ({x}_i + P_i)_i", f"P_(i,2j) = sin({f}),  P_(i,2j+1) = cos({f})"),
        (rf"{x} \mapsto ({x}_i + P_i)_i", rf"P_{{i,2j}} = \sin({F}),\ P_{{i,2j+1}} = \cos({F})"),
        m.d,
    )


@term(LayerNorm)
def _layer_norm(m: LayerNorm, T: int, x: str) -> Term:
    # center: mean and subtract (2d); variance: square and mean (2d); scale, γ, β (3d).
    return Term(
        (
            f"{x} ↦ γ ⊙ ({x} − μ) / √(σ² + ε) + β",
            f"μ = mean({x}),  σ² = mean(({x} − μ)²),  ε = {m.eps:g}",
        ),
        (
            rf"{x} \mapsto \gamma \odot ({x} - \mu) / \sqrt{{\sigma^2 + \varepsilon}} + \beta",
            rf"\mu = \mathrm{{mean}}({x}),\ \sigma^2 = \mathrm{{mean}}(({x} - \mu)^2),"
            rf"\ \varepsilon = {tex_number(m.eps)}",
        ),
        7 * m.d,
    )


@term(RMSNorm)
def _rms_norm(m: RMSNorm, T: int, x: str) -> Term:
    return Term(
        (f"{x} ↦ γ ⊙ {x} / √(mean({x}²) + ε),  ε = {m.eps:g}",),
        (
            rf"{x} \mapsto \gamma \odot {x} / \sqrt{{\mathrm{{mean}}({x}^2) + \varepsilon}},"
            rf"\ \varepsilon = {tex_number(m.eps)}",
        ),
        4 * m.d,
    )


# φ(u) as (text, tex, elementwise FLOPs per coordinate; transcendentals count 0).
PHI = {
    "gelu_tanh": (
        "φ(u) = u/2 · (1 + tanh(√(2/π) (u + 0.044715 u³)))",
        r"\varphi(u) = \frac{u}{2} (1 + \tanh(\sqrt{2/\pi}\,(u + 0.044715\,u^3)))",
        8,
    ),
    "gelu": (
        "φ(u) = u/2 · (1 + erf(u/√2))",
        r"\varphi(u) = \frac{u}{2} (1 + \mathrm{erf}(u/\sqrt{2}))",
        4,
    ),
    "relu": ("φ(u) = max(u, 0)", r"\varphi(u) = \max(u, 0)", 1),
    "silu": ("φ(u) = u / (1 + e^(−u))", r"\varphi(u) = u / (1 + e^{-u})", 4),
}


W_IN, W_OUT, W_GATE = (rf"W_{{\mathrm{{{s}}}}}" for s in ("in", "out", "gate"))
B_IN, B_OUT = r"b_{\mathrm{in}}", r"b_{\mathrm{out}}"


@term(MLP)
def _mlp(m: MLP, T: int, x: str) -> Term:
    phi_text, phi_tex, phi_flops = PHI[m.activation]
    if m.bias:
        text = f"{x} ↦ φ({x} W_in + b_in) W_out + b_out"
        tex = rf"{x} \mapsto \varphi({x} {W_IN} + {B_IN}) {W_OUT} + {B_OUT}"
    else:
        text = f"{x} ↦ φ({x} W_in) W_out"
        tex = rf"{x} \mapsto \varphi({x} {W_IN}) {W_OUT}"
    flops = 4 * m.d * m.m + phi_flops * m.m + (m.m + m.d if m.bias else 0)
    return Term((text, phi_text), (tex, phi_tex), flops)


@term(SwiGLU)
def _swiglu(m: SwiGLU, T: int, x: str) -> Term:
    return Term(
        (f"{x} ↦ (silu({x} W_gate) ⊙ {x} W_in) W_out", "silu(u) = u / (1 + e^(−u))"),
        (
            rf"{x} \mapsto (\mathrm{{silu}}({x} {W_GATE}) \odot {x} {W_IN}) {W_OUT}",
            r"\mathrm{silu}(u) = u / (1 + e^{-u})",
        ),
        6 * m.d * m.m + 5 * m.m,  # silu: 4 per coordinate, the product ⊙: 1
    )


@term(Attention)
def _attention(m: Attention, T: int, x: str) -> Term:
    H, G, k, d = m.H, m.kv_heads, m.k, m.d
    g = "h" if G == H else "g(h)"
    bias = lambda s: f" + b_{s}^{g if s in 'KV' else 'h'}" if m.bias else ""
    tbias = lambda s: rf" + b_{s}^{{{g if s in 'KV' else 'h'}}}" if m.bias else ""
    qkv = [f"{x} W_{s}^{g if s in 'KV' else 'h'}{bias(s)}" for s in "QKV"]
    tqkv = [rf"{x} W_{s}^{{{g if s in 'KV' else 'h'}}}{tbias(s)}" for s in "QKV"]
    if m.rope_theta is not None:
        qkv[:2] = [f"R({p})" for p in qkv[:2]]
        tqkv[:2] = [rf"R({p})" for p in tqkv[:2]]
    mask, tmask = ("causal(", r"\mathrm{causal}(") if m.causal else ("", "")
    close = ")" if m.causal else ""
    text = [
        f"{x} ↦ Σ_(h=1..{H}) A^h v^h W_O^h" + (" + b_O" if m.bias else ""),
        f"A^h = softmax({mask}q^h k^hᵀ / √{k}{close})",
        f"q^h = {qkv[0]},  k^h = {qkv[1]},  v^h = {qkv[2]}",
    ]
    tex = [
        rf"{x} \mapsto \sum_{{h=1}}^{{{H}}} A^h v^h W_O^h" + (" + b_O" if m.bias else ""),
        rf"A^h = \mathrm{{softmax}}({tmask}q^h {{k^h}}^\top / \sqrt{{{k}}}{close})",
        rf"q^h = {tqkv[0]},\ k^h = {tqkv[1]},\ v^h = {tqkv[2]}",
    ]
    if m.causal:
        text.append("causal(s)_ij = s_ij if j ≤ i, else −∞")
        tex.append(r"\mathrm{causal}(s)_{ij} = s_{ij}\ (j \leq i),\ -\infty\ (j > i)")
    if G != H:
        text.append(f"g(h) = ⌈h / {H // G}⌉  ({G} key/value heads shared by {H} query heads)")
        tex.append(rf"g(h) = \lceil h / {H // G} \rceil")
    if m.rope_theta is not None:
        text.append(
            f"R (RoPE): at position i, rotate (u_j, u_(j+{k // 2})) by the angle "
            f"i·{m.rope_theta:g}^(−2j/{k});  i, j counted from 0"
        )
        tex.append(
            rf"R:\ (u_j, u_{{j+{k // 2}}}) \mapsto \mathrm{{rot}}_{{i\,\theta^{{-2j/{k}}}}}"
            rf"(u_j, u_{{j+{k // 2}}}),\ \theta = {m.rope_theta:g}"
        )
    flops = (
        2 * d * k * (2 * H + 2 * G)  # the projections W_Q, W_K, W_V and W_O
        + 4 * H * T * k  # the scores q kᵀ and the mix A v, over all T keys
        + H * T * (5 + m.causal)  # 1/√k, softmax (max, subtract, sum, divide), the mask
        + ((H + 2 * G) * k + d if m.bias else 0)
        + (3 * (H + G) * k if m.rope_theta is not None else 0)  # two products and a sum
    )
    return Term(tuple(text), tuple(tex), flops)


@term(Unembedding)
def _unembedding(m: Unembedding, T: int, x: str) -> Term:
    b, tb = (" + b_U", " + b_U") if m.bias else ("", "")
    return Term(
        (f"{x} ↦ {x} W_U{b}",), (rf"{x} \mapsto {x} W_U{tb}",), 2 * m.d * m.V + m.bias * m.V
    )


# -- combinators: their own work only; the chain describes their children -----------------


@term(Compose)
def _compose(m: Compose, T: int, x: str) -> Term:
    parts = [label(c) for c in m.maps]
    return Term((" ∘ ".join(t for t, _ in parts),), (r" \circ ".join(t for _, t in parts),), 0)


@term(Residual)
def _residual(m: Residual, T: int, x: str) -> Term:
    f, tf = label(m.f)
    text, tex = f"{x} ↦ {x} + {f}({x})", rf"{x} \mapsto {x} + {tf}({x})"
    return Term((text,), (tex,), per_token(m.codomain))


@term(Parallel)
def _parallel(m: Parallel, T: int, x: str) -> Term:
    parts = [label(c) for c in m.maps]
    return Term(
        (f"{x} ↦ " + " + ".join(f"{t}({x})" for t, _ in parts),),
        (rf"{x} \mapsto " + " + ".join(f"{t}({x})" for _, t in parts),),
        (len(m.maps) - 1) * per_token(m.codomain),
    )


@term(Tokenwise)
def _tokenwise(m: Tokenwise, T: int, x: str) -> Term:
    f, tf = label(m.f)
    return Term((f"{x} ↦ ({f}({x}_t))_t",), (rf"{x} \mapsto ({tf}({x}_t))_t",), 0)


@term(Repeat)
def _repeat(m: Repeat, T: int, x: str) -> Term:
    f, tf = label(m.f)
    return Term(
        (f"{f} ∘ ⋯ ∘ {f}  ({m.L} copies, parameters stacked on a leading axis of {m.L})",),
        (rf"{tf}^{{\circ {m.L}}}",),
        0,
    )


@term(Scope)
def _scope(m: Scope, T: int, x: str) -> Term:
    f, tf = label(m.f)
    return Term((f"= {f}  (parameters under {m.name!r})",), (f"= {tf}",), 0)


@term(Tie)
def _tie(m: Tie, T: int, x: str) -> Term:
    """One parameter defined by another: ``W_U = W_Eᵀ`` for GPT-2's tied unembedding."""
    dst, src = m.dst[-1], m.src[-1]
    if m.fn is jnp.transpose:
        return Term((f"{dst} = {src}ᵀ",), (rf"{tex_param(dst)} = {tex_param(src)}^\top",), 0)
    fn = getattr(m.fn, "__name__", "fn")
    return Term(
        (f"{dst} = {fn}({src})",), (rf"{tex_param(dst)} = \mathrm{{{fn}}}({tex_param(src)})",), 0
    )
