"""Multi-head attention: a sum of heads.

    Attn(x) = Σ_h A^h x W_V^h W_O^h + b_O        (A^h ⊗ W_O^h W_V^h in the paper's notation)
    A^h     = softmax(mask(q^h k^hᵀ / √k)),  q^h = x W_Q^h + b_Q^h,  k^h = x W_K^g + b_K^g

R^{T×d} → R^{T×d}. Shapes: W_Q [H,d,k], W_K [G,d,k], W_V [G,d,k], W_O [H,k,d]
(G = H without grouping; with GQA, query head h reads key/value head
g(h) = h // (H/G)). With ``rope_theta`` set, q and k are rotated (RoPE) before
the scores. The scores, the softmax and the pattern are computed in float32.

Computed batched over heads with einsum; ``heads``, ``W_QK`` and ``W_OV`` give
the per-head terms that the circuits module reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Param, Real, Term
from .positional import rope


@dataclass(frozen=True, repr=False)
class Attention(Map):
    d: int
    H: int
    k: int
    G: int | None = None
    causal: bool = True
    bias: bool = False
    rope_theta: float | None = None
    std: float = 0.02
    out_std: float | None = None
    name: str = "attn"

    def __post_init__(self):
        G = self.kv_heads
        if min(self.d, self.H, self.k, G) < 1:
            raise ValueError(f"attention sizes must be >= 1: d={self.d} H={self.H} k={self.k}")
        if self.H % G:
            raise ValueError(
                f"{self.name}: H={self.H} query heads cannot share G={G} key/value heads; "
                "choose G dividing H"
            )
        if self.rope_theta is not None and self.k % 2:
            raise ValueError(f"{self.name}: RoPE needs an even head dimension, got k={self.k}")

    kv_heads = property(lambda self: self.G or self.H)
    domain = property(lambda self: Real("T", self.d))
    codomain = property(lambda self: Real("T", self.d))

    def spec(self):
        H, G, d, k = self.H, self.kv_heads, self.d, self.k
        p = {
            "W_Q": Param((H, d, k), ("H", "d", "k"), self.std),
            "W_K": Param((G, d, k), ("G", "d", "k"), self.std),
            "W_V": Param((G, d, k), ("G", "d", "k"), self.std),
            "W_O": Param((H, k, d), ("H", "k", "d"), self.out_std or self.std),
        }
        if self.bias:
            p |= {"b_Q": Param((H, k), ("H", "k")), "b_K": Param((G, k), ("G", "k"))}
            p |= {"b_V": Param((G, k), ("G", "k")), "b_O": Param((d,), ("d",))}
        return p

    # -- the pieces ----------------------------------------------------------
    def qkv(self, params, x_Td, positions=None):
        """q [H,T,k], k [G,T,k], v [G,T,k] at ``positions`` (default 0..T-1; RoPE uses them)."""
        dt = x_Td.dtype

        def proj(W, b):
            y = jnp.einsum("td,hdk->htk", x_Td, params[W].astype(dt))
            return y + params[b].astype(dt)[:, None, :] if self.bias else y

        q, k, v = proj("W_Q", "b_Q"), proj("W_K", "b_K"), proj("W_V", "b_V")
        if self.rope_theta is not None:
            pos = jnp.arange(x_Td.shape[0]) if positions is None else positions
            q, k = rope(q, pos, self.rope_theta), rope(k, pos, self.rope_theta)
        return q, k, v

    def scores(self, q_HTk, k_GSk):
        """q^h k^{g(h)}ᵀ / √k, float32.   [H,T,k] × [G,S,k] → [H,T,S]."""
        H, T, _ = q_HTk.shape
        G = k_GSk.shape[0]
        q = q_HTk.reshape(G, H // G, T, self.k)
        s = jnp.einsum("grtk,gsk->grts", q, k_GSk, preferred_element_type=jnp.float32)
        return s.reshape(H, T, -1) / jnp.sqrt(jnp.float32(self.k))

    def mix(self, A_HTS, v_GSk):
        """z^h = A^h v^{g(h)}.   [H,T,S] × [G,S,k] → [H,T,k]."""
        H, T, S = A_HTS.shape
        G = v_GSk.shape[0]
        A = A_HTS.reshape(G, H // G, T, S).astype(v_GSk.dtype)
        return jnp.einsum("grts,gsk->grtk", A, v_GSk).reshape(H, T, self.k)

    def out(self, params, z_HTk):
        """Σ_h z^h W_O^h + b_O.   [H,T,k] → [T,d]."""
        y = jnp.einsum("htk,hkd->td", z_HTk, params["W_O"].astype(z_HTk.dtype))
        return y + params["b_O"].astype(y.dtype) if self.bias else y

    def forward(self, params, x_Td):
        q, k, v = self.qkv(params, x_Td)
        s = self.scores(q, k)
        if self.causal:
            T = x_Td.shape[0]
            s = jnp.where(jnp.tril(jnp.ones((T, T), bool)), s, -jnp.inf)
        A = jax.nn.softmax(s, axis=-1)
        z = self.mix(A, v)
        y = self.out(params, z)
        n = self.name
        return y, {n: y, f"{n}.scores": s, f"{n}.pattern": A, f"{n}.z": z}

    def apply(self, params, x_Td):
        return self.forward(params, x_Td)[0]

    def trace_points(self):
        n = self.name
        return (n, f"{n}.scores", f"{n}.pattern", f"{n}.z")

    # -- the cached form, for generation ---------------------------------------------------
    def cache_spec(self, S):
        """k and v of the G key/value heads at S slots: [G, S, k] each."""
        return {"k": (self.kv_heads, S, self.k), "v": (self.kv_heads, S, self.k)}

    def decode(self, params, cache, x_Td, positions, layer=()):
        """Write the chunk's k, v at its (contiguous) ``positions`` in this layer's slice of
        the cache; the query at position p attends to the slots s ≤ p (later slots hold
        padding or nothing yet, whatever they contain)."""
        if not self.causal:
            raise NotImplementedError(f"{self.name}: a non-causal attention cannot be decoded")
        q_HTk, k_GTk, v_GTk = self.qkv(params, x_Td, positions)

        def write(C, new_GTk):
            new = new_GTk.astype(C.dtype).reshape((1,) * len(layer) + new_GTk.shape)
            return jax.lax.dynamic_update_slice(C, new, (*layer, 0, positions[0], 0))

        cache = {"k": write(cache["k"], k_GTk), "v": write(cache["v"], v_GTk)}
        K_GSk, V_GSk = cache["k"][tuple(layer)], cache["v"][tuple(layer)]
        s_HTS = self.scores(q_HTk, K_GSk.astype(q_HTk.dtype))
        seen_TS = jnp.arange(K_GSk.shape[1])[None, :] <= positions[:, None]
        A_HTS = jax.nn.softmax(jnp.where(seen_TS, s_HTS, -jnp.inf), axis=-1)
        return self.out(params, self.mix(A_HTS, V_GSk.astype(x_Td.dtype))), cache

    # -- its term, for describe --------------------------------------------------------------
    def term(self, T, x):
        H, G, k, d = self.H, self.kv_heads, self.k, self.d
        g = "h" if G == H else "g(h)"
        head = lambda s: g if s in "KV" else "h"
        bias = lambda s: f" + b_{s}^{head(s)}" if self.bias else ""
        tbias = lambda s: rf" + b_{s}^{{{head(s)}}}" if self.bias else ""
        qkv = [f"{x} W_{s}^{head(s)}{bias(s)}" for s in "QKV"]
        tqkv = [rf"{x} W_{s}^{{{head(s)}}}{tbias(s)}" for s in "QKV"]
        if self.rope_theta is not None:
            qkv[:2] = [f"R({p})" for p in qkv[:2]]
            tqkv[:2] = [rf"R({p})" for p in tqkv[:2]]
        mask, tmask = ("causal(", r"\mathrm{causal}(") if self.causal else ("", "")
        close = ")" if self.causal else ""
        b_O = " + b_O" if self.bias else ""
        text = [
            f"{x} ↦ Σ_(h=1..{H}) A^h v^h W_O^h{b_O}",
            f"A^h = softmax({mask}q^h k^hᵀ / √{k}{close})",
            f"q^h = {qkv[0]},  k^h = {qkv[1]},  v^h = {qkv[2]}",
        ]
        tex = [
            rf"{x} \mapsto \sum_{{h=1}}^{{{H}}} A^h v^h W_O^h{b_O}",
            rf"A^h = \mathrm{{softmax}}({tmask}q^h {{k^h}}^\top / \sqrt{{{k}}}{close})",
            rf"q^h = {tqkv[0]},\ k^h = {tqkv[1]},\ v^h = {tqkv[2]}",
        ]
        if self.causal:
            text.append("causal(s)_ij = s_ij if j ≤ i, else −∞")
            tex.append(r"\mathrm{causal}(s)_{ij} = s_{ij}\ (j \leq i),\ -\infty\ (j > i)")
        if G != H:
            text.append(f"g(h) = ⌈h / {H // G}⌉  ({G} key/value heads shared by {H} query heads)")
            tex.append(rf"g(h) = \lceil h / {H // G} \rceil")
        if self.rope_theta is not None:
            text.append(
                f"R (RoPE): at position i, rotate (u_j, u_(j+{k // 2})) by the angle "
                f"i·{self.rope_theta:g}^(−2j/{k});  i, j counted from 0"
            )
            tex.append(
                rf"R:\ (u_j, u_{{j+{k // 2}}}) \mapsto \mathrm{{rot}}_{{i\,\theta^{{-2j/{k}}}}}"
                rf"(u_j, u_{{j+{k // 2}}}),\ \theta = {self.rope_theta:g}"
            )
        # Attention computes all T×T scores: the causal mask is applied, not exploited.
        flops = (
            2 * d * k * (2 * H + 2 * G)  # the projections W_Q, W_K, W_V and W_O
            + 4 * H * T * k  # the scores q kᵀ and the mix A v, over all T keys
            + H * T * (5 + self.causal)  # 1/√k, softmax (max, subtract, sum, divide), the mask
            + ((H + 2 * G) * k + d if self.bias else 0)
            + (3 * (H + G) * k if self.rope_theta is not None else 0)  # two products and a sum
        )
        return Term(tuple(text), tuple(tex), flops)

    # -- per-head terms, for circuits ------------------------------------------
    def heads(self, params, x_Td):
        """Each head's write A^h x W_V^h W_O^h (no b_O).   [T,d] → [H,T,d];  Σ_h + b_O = Attn."""
        _, trace = self.forward(params, x_Td)
        return jnp.einsum("htk,hkd->htd", trace[f"{self.name}.z"], params["W_O"])

    def expand_kv(self, W_G):
        """Key/value tensors [G,…] repeated to one per query head [H,…]."""
        return jnp.repeat(W_G, self.H // self.kv_heads, axis=0)

    def W_QK(self, params):
        """W_Q^h W_K^hᵀ.   [H, d, d]: the bilinear form of head h's scores (before 1/√k)."""
        return jnp.einsum("hdk,hek->hde", params["W_Q"], self.expand_kv(params["W_K"]))

    def W_OV(self, params):
        """W_V^h W_O^h.   [H, d, d]: what head h writes for each vector it attends to."""
        return jnp.einsum("hdk,hke->hde", self.expand_kv(params["W_V"]), params["W_O"])
