"""Multi-head attention: a sum of heads.

    Attn(x) = Σ_h A^h x W_V^h W_O^h + b_O        (A^h ⊗ W_O^h W_V^h in the paper's notation)
    A^h     = softmax(mask(q^h k^hᵀ / √k)),  q^h = x W_Q^h + b_Q^h,  k^h = x W_K^g + b_K^g

R^{T×d} → R^{T×d}. Shapes: W_Q [H,d,k], W_K [G,d,k], W_V [G,d,k], W_O [H,k,d]
(G = H without grouping; with GQA, query head h reads key/value head
g(h) = h // (H/G)). The scores, the softmax and the pattern are computed in float32.

The variants of the model zoo are fields, each off by default:

    bias / out_bias   b_Q, b_K, b_V / b_O (Qwen2: the first without the second)
    qk_norm           q, k ↦ RMSNorm(q), RMSNorm(k) before RoPE: per head over k ("head":
                      Qwen3, Gemma 3) or over all heads at once ("all": OLMo 2); γ_Q, γ_K
                      (``qk_norm_offset`` 1: the gains are 1 + γ, Gemma 3's norm)
    rope_theta        q, k rotated (RoPE); ``rotary_dim`` < k rotates only the first
                      rotary_dim coordinates of each head (GPT-NeoX, Phi: partial rotary)
    scale             the scores' factor (default 1/√k; Gemma 2: query_pre_attn_scalar^-½)
    softcap           s ↦ c·tanh(s/c) before the mask (Gemma 2)
    window            a sliding window: the query at i sees the keys j with i − window < j ≤ i

Packed documents (``core/documents.py``): inside ``documents(s)`` the query at i sees only
keys of its own document (s_i = s_j) and RoPE rotates by the in-document position.

The cache of a windowed layer is a ring of ``window`` slots (when the cache would be
longer): position p is written at slot p mod window beside its absolute position, and the
mask reads the stored positions, so its memory does not grow with the generated length.

How it is computed is a field too: ``impl="dense"`` materialises the [H,T,T] scores;
``"blockwise"`` is FlashAttention (``blockwise.py``: O(T·block) memory, fully masked
blocks skipped, a recomputing VJP); ``"auto"`` takes blockwise from T ≥ ``BLOCKWISE_FROM``
and, on GPU, ``jax.nn.dot_product_attention`` (cuDNN) where it applies. The trace (for
circuits) always computes densely: it returns the pattern.

Computed batched over heads with einsum; ``heads``, ``W_QK`` and ``W_OV`` give
the per-head terms that the circuits module reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Param, Real, Term
from ..core.documents import current
from .blockwise import block_pairs, blockwise_attention, sdpa_attention
from .positional import rope

BLOCKWISE_FROM = 1024  # "auto": blockwise attention from this T on (CPU: dense is faster below)
QKV = "W_QKV"  # the decode layout's fused projection (``decode_layout``)
IMPLS = ("dense", "blockwise", "auto")


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
    out_bias: bool | None = None  # None: as ``bias``
    qk_norm: str | None = None  # None | "head" | "all"
    qk_norm_eps: float = 1e-6
    qk_norm_offset: float = 0.0  # 1: q, k scaled by 1 + γ (Gemma 3), γ initially 0
    rotary_dim: int | None = None  # None: the whole head (k)
    scale: float | None = None  # None: 1/√k
    softcap: float | None = None
    window: int | None = None
    impl: str = "dense"
    block: int = 128  # positions per block (blockwise)

    def __post_init__(self):
        G = self.kv_heads
        if min(self.d, self.H, self.k, G) < 1:
            raise ValueError(f"attention sizes must be >= 1: d={self.d} H={self.H} k={self.k}")
        if self.H % G:
            raise ValueError(
                f"{self.name}: H={self.H} query heads cannot share G={G} key/value heads; "
                "choose G dividing H"
            )
        if self.rope_theta is not None and self.rotary % 2:
            raise ValueError(
                f"{self.name}: RoPE needs an even head (rotary) dimension, got {self.rotary}"
            )
        if not 0 < self.rotary <= self.k:
            raise ValueError(
                f"{self.name}: rotary_dim={self.rotary_dim} must be in [1, k={self.k}]"
            )
        if self.qk_norm not in (None, "head", "all"):
            raise ValueError(
                f"{self.name}: qk_norm must be None, 'head' or 'all', got {self.qk_norm!r}"
            )
        if self.impl not in IMPLS:
            raise ValueError(f"{self.name}: impl must be one of {IMPLS}, got {self.impl!r}")
        for what in ("window", "softcap", "scale"):
            v = getattr(self, what)
            if v is not None and not v > 0:
                raise ValueError(f"{self.name}: {what}={v!r} must be positive (or None)")

    kv_heads = property(lambda self: self.G or self.H)
    rotary = property(lambda self: self.rotary_dim or self.k)
    has_out_bias = property(lambda self: self.bias if self.out_bias is None else self.out_bias)
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
            p |= {"b_V": Param((G, k), ("G", "k"))}
        if self.has_out_bias:
            p |= {"b_O": Param((d,), ("d",))}
        one = 1.0 - self.qk_norm_offset  # the gain starts at 1
        if self.qk_norm == "head":
            p |= {
                "gamma_Q": Param((k,), ("k",), fill=one),
                "gamma_K": Param((k,), ("k",), fill=one),
            }
        elif self.qk_norm == "all":
            p |= {"gamma_Q": Param((H, k), ("H", "k"), fill=one)}
            p |= {"gamma_K": Param((G, k), ("G", "k"), fill=one)}
        return p

    # -- the pieces ----------------------------------------------------------
    def qkv(self, params, x_Td, positions=None):
        """q [H,T,k], k [G,T,k], v [G,T,k] at ``positions`` (default 0..T-1; RoPE uses them)."""
        dt = x_Td.dtype

        def proj(W, b):
            y = jnp.einsum("td,hdk->htk", x_Td, params[W].astype(dt))
            return y + params[b].astype(dt)[:, None, :] if self.bias else y

        if QKV in params:  # the decode layout (``decode_layout``): one matrix [d, (H+2G)·k]
            H, G, T = self.H, self.kv_heads, x_Td.shape[0]
            qkv = jnp.swapaxes((x_Td @ params[QKV].astype(dt)).reshape(T, H + 2 * G, -1), 0, 1)
            if self.bias:
                b = jnp.concatenate([params["b_Q"], params["b_K"], params["b_V"]]).astype(dt)
                qkv = qkv + b[:, None, :]
            q, k, v = qkv[:H], qkv[H : H + G], qkv[H + G :]
        else:
            q, k, v = proj("W_Q", "b_Q"), proj("W_K", "b_K"), proj("W_V", "b_V")
        if self.qk_norm is not None:
            q, k = self._qk_norm(q, params["gamma_Q"]), self._qk_norm(k, params["gamma_K"])
        if self.rope_theta is not None:
            docs = current()
            pos = positions if positions is not None else docs.positions if docs else None
            pos = jnp.arange(x_Td.shape[0]) if pos is None else pos
            q, k = self._rope(q, pos), self._rope(k, pos)
        return q, k, v

    def _qk_norm(self, x_HTk, gamma):
        """RMSNorm of each head's vector (over k), or of all heads' at once (over H·k)."""
        x = x_HTk.astype(jnp.float32)
        axes = (-1,) if self.qk_norm == "head" else (0, -1)
        x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axes, keepdims=True) + self.qk_norm_eps)
        g = gamma.astype(jnp.float32) + self.qk_norm_offset if self.qk_norm_offset else gamma
        g = g if self.qk_norm == "head" else g[:, None, :]
        return (x * g).astype(x_HTk.dtype)

    def _rope(self, x_HTk, positions):
        r = self.rotary
        if r == self.k:
            return rope(x_HTk, positions, self.rope_theta)
        turned = rope(x_HTk[..., :r], positions, self.rope_theta)
        return jnp.concatenate([turned, x_HTk[..., r:]], axis=-1)

    def scores(self, q_HTk, k_GSk, keys_kS: bool = False):
        """q^h k^{g(h)}ᵀ / √k (or · scale), soft-capped if asked, float32.
        [H,T,k] × [G,S,k] → [H,T,S]; with ``keys_kS`` the keys come as [G,k,S] (a cache)."""
        H, T, _ = q_HTk.shape
        G = k_GSk.shape[0]
        q = q_HTk.reshape(G, H // G, T, self.k)
        keys = "gks" if keys_kS else "gsk"
        s = jnp.einsum(f"grtk,{keys}->grts", q, k_GSk, preferred_element_type=jnp.float32)
        s = s.reshape(H, T, -1) * jnp.float32(self.scale or 1 / self.k**0.5)
        if self.softcap is not None:
            s = self.softcap * jnp.tanh(s / self.softcap)
        return s

    def visible(self, q_pos, k_pos):
        """[T, S] bool: the key at k_pos is seen from the query at q_pos (causal, window)."""
        seen = k_pos[None, :] <= q_pos[:, None] if self.causal else True
        if self.window is not None:
            seen = seen & (k_pos[None, :] > q_pos[:, None] - self.window)
        return jnp.broadcast_to(seen, (q_pos.shape[0], k_pos.shape[0]))

    def mix(self, A_HTS, v_GSk):
        """z^h = A^h v^{g(h)}.   [H,T,S] × [G,S,k] → [H,T,k]."""
        H, T, S = A_HTS.shape
        G = v_GSk.shape[0]
        A = A_HTS.reshape(G, H // G, T, S).astype(v_GSk.dtype)
        return jnp.einsum("grts,gsk->grtk", A, v_GSk).reshape(H, T, self.k)

    def out(self, params, z_HTk):
        """Σ_h z^h W_O^h + b_O.   [H,T,k] → [T,d]."""
        y = jnp.einsum("htk,hkd->td", z_HTk, params["W_O"].astype(z_HTk.dtype))
        return y + params["b_O"].astype(y.dtype) if self.has_out_bias else y

    def mask(self, T: int):
        """[T, T] bool: what each query of a sequence of T sees (with packed documents: in
        its own), or None (every key)."""
        docs, i = current(), jnp.arange(T)
        seen = self.visible(i, i) if self.causal or self.window is not None else None
        if docs is not None:
            same = docs.same(i[:, None], i[None, :])
            seen = same if seen is None else seen & same
        return seen

    def forward(self, params, x_Td):
        q, k, v = self.qkv(params, x_Td)
        s = self.scores(q, k)
        seen = self.mask(x_Td.shape[0])
        if seen is not None:
            s = jnp.where(seen, s, -jnp.inf)
        A = jax.nn.softmax(s, axis=-1)
        z = self.mix(A, v)
        y = self.out(params, z)
        n = self.name
        return y, {n: y, f"{n}.scores": s, f"{n}.pattern": A, f"{n}.z": z}

    def apply(self, params, x_Td):
        return self.out(params, self.results(params, x_Td))

    def results(self, params, x_Td):
        """Each head's result z^h = A^h v^{g(h)}, computed the way ``how`` says.
        [T,d] → [H,T,k]"""
        how = self.how(x_Td.shape[0], x_Td.dtype)
        if how == "dense":
            return self.forward(params, x_Td)[1][f"{self.name}.z"]
        q, k, v = self.qkv(params, x_Td)
        kw = dict(causal=self.causal, window=self.window, softcap=self.softcap, scale=self.scale)
        if how == "sdpa":
            return sdpa_attention(q, k, v, **kw)
        docs = current()
        seg = None if docs is None else docs.segments
        return blockwise_attention(q, k, v, **kw, block=self.block, segments=seg)

    def split(self, key):
        """Through the heads' results: A = out ∘ heads, so a splice edits z^h."""
        if key != f"{self.name}.z":
            return super().split(key)
        return self.results, lambda params, x, z: self.out(params, z)

    def point_space(self, key):
        if key != f"{self.name}.z":
            return super().point_space(key)
        return Real(self.H, "T", self.k)

    def how(self, T: int, dtype=jnp.float32) -> str:
        """How ``apply`` computes at length T: "dense", "blockwise" or "sdpa" (cuDNN's fused
        kernel, on GPU, for the half-precision inputs it takes, no soft-capping and one
        document: packed documents go blockwise)."""
        if self.impl != "auto":
            return self.impl
        half = jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
        one_doc = current() is None
        if jax.default_backend() == "gpu" and half and self.softcap is None and one_doc:
            return "sdpa"
        return "blockwise" if T >= BLOCKWISE_FROM else "dense"

    def trace_points(self):
        n = self.name
        return (n, f"{n}.scores", f"{n}.pattern", f"{n}.z")

    # -- the cached form, for generation ---------------------------------------------------
    def ring(self, S: int) -> bool:
        """Whether a cache of S slots is a ring of ``window`` slots (the window is shorter)."""
        return self.window is not None and self.window < S

    def cache_spec(self, S):
        """k and v of the G key/value heads at S slots: k as [G, k, S] (the scores q Kᵀ read
        it as the matrix product wants it: XLA:CPU would otherwise transpose the whole cache
        at every token), v as [G, S, k]; for a window w < S a ring of w slots, [G, w, k]
        each, and ``pos`` [w] (int32: 1 + the position each slot holds, 0 empty)."""
        G, k = self.kv_heads, self.k
        if self.ring(S):
            w = self.window
            return {"k": (G, w, k), "v": (G, w, k), "pos": jax.ShapeDtypeStruct((w,), jnp.int32)}
        return {"k": (G, k, S), "v": (G, S, k)}

    def decode_layout(self, params):
        """Its params as the decode loop reads them, laid out once before the loop: W_Q, W_K,
        W_V as one matrix [d, (H + 2G)·k], a plain matrix-vector product for XLA:CPU (the
        [H, d, k] tensors it would transpose at every token)."""
        W = jnp.concatenate([params["W_Q"], params["W_K"], params["W_V"]])  # [H + 2G, d, k]
        rest = {n: v for n, v in params.items() if n not in ("W_Q", "W_K", "W_V")}
        return rest | {QKV: jnp.swapaxes(W, 0, 1).reshape(self.d, -1)}

    def decode(self, params, cache, x_Td, positions, layer=()):
        """Write the chunk's k, v at its (contiguous) ``positions`` in this layer's slice of
        the cache; the query at position p attends to the slots s ≤ p (later slots hold
        padding or nothing yet, whatever they contain). A ring cache: ``decode_ring``."""
        if not self.causal:
            raise NotImplementedError(f"{self.name}: a non-causal attention cannot be decoded")
        if "pos" in cache:
            return self.decode_ring(params, cache, x_Td, positions, layer)
        q_HTk, k_GTk, v_GTk = self.qkv(params, x_Td, positions)

        def write(C, new, at):
            new = new.astype(C.dtype).reshape((1,) * len(layer) + new.shape)
            return jax.lax.dynamic_update_slice(C, new, (*layer, *at))

        p = positions[0]
        k_new = jnp.swapaxes(k_GTk, 1, 2)  # [G, k, T]
        cache = {"k": write(cache["k"], k_new, (0, 0, p)), "v": write(cache["v"], v_GTk, (0, p, 0))}
        K_GkS, V_GSk = cache["k"][tuple(layer)], cache["v"][tuple(layer)]
        s_HTS = self.scores(q_HTk, K_GkS.astype(q_HTk.dtype), keys_kS=True)
        seen_TS = self.visible(positions, jnp.arange(V_GSk.shape[1]))
        A_HTS = jax.nn.softmax(jnp.where(seen_TS, s_HTS, -jnp.inf), axis=-1)
        return self.out(params, self.mix(A_HTS, V_GSk.astype(x_Td.dtype))), cache

    def decode_ring(self, params, cache, x_Td, positions, layer=()):
        """The chunk at ``positions`` (non-decreasing: a repeated position is padding, never
        written) against a ring of w slots. The query at p sees the stored slots whose
        position q satisfies p − w < q < positions[0] (older than the chunk: a stale later
        entry is invisible) and the chunk's own keys j ≤ its index with p − w < p_j. Then the
        chunk's new positions are written at p mod w (of a chunk longer than w, its last w)."""
        w, T = self.window, x_Td.shape[0]
        q_HTk, k_GTk, v_GTk = self.qkv(params, x_Td, positions)
        at = tuple(layer)
        K_GWk, V_GWk, pos_W = cache["k"][at], cache["v"][at], cache["pos"][at] - 1
        old_TW = (pos_W >= 0) & (pos_W < positions[0]) & (pos_W > positions[:, None] - w)
        i = jnp.arange(T)
        new_TT = (i[None, :] <= i[:, None]) & (positions[None, :] > positions[:, None] - w)
        K = jnp.concatenate([K_GWk.astype(q_HTk.dtype), k_GTk], axis=1)
        V = jnp.concatenate([V_GWk.astype(x_Td.dtype), v_GTk], axis=1)
        s_HTS = self.scores(q_HTk, K)
        A_HTS = jax.nn.softmax(jnp.where(jnp.concatenate([old_TW, new_TT], 1), s_HTS, -jnp.inf), -1)
        y = self.out(params, self.mix(A_HTS, V))
        fresh = jnp.concatenate([jnp.ones(1, bool), positions[1:] > positions[:-1]])
        fresh = fresh & (positions > positions[-1] - w)
        slot_T = jnp.where(fresh, positions % w, w)  # slot w: out of range, dropped

        def write(C, new):
            C_l = C[at].at[..., slot_T, :].set(new.astype(C.dtype), mode="drop")
            return jax.lax.dynamic_update_slice(C, C_l[(None,) * len(layer)], (*layer, 0, 0, 0))

        P_l = cache["pos"][at].at[slot_T].set(positions + 1, mode="drop")
        P = jax.lax.dynamic_update_slice(cache["pos"], P_l[(None,) * len(layer)], (*layer, 0))
        return y, {"k": write(cache["k"], k_GTk), "v": write(cache["v"], v_GTk), "pos": P}

    # -- its term, for describe --------------------------------------------------------------
    def term(self, T, x):
        H, G, k, d, r = self.H, self.kv_heads, self.k, self.d, self.rotary
        g = "h" if G == H else "g(h)"
        head = lambda s: g if s in "KV" else "h"
        bias = lambda s: f" + b_{s}^{head(s)}" if self.bias else ""
        tbias = lambda s: rf" + b_{s}^{{{head(s)}}}" if self.bias else ""
        qkv = [f"{x} W_{s}^{head(s)}{bias(s)}" for s in "QKV"]
        tqkv = [rf"{x} W_{s}^{{{head(s)}}}{tbias(s)}" for s in "QKV"]
        if self.qk_norm is not None:
            qkv[:2] = [f"N_{s}({p})" for s, p in zip("QK", qkv[:2])]
            tqkv[:2] = [rf"N_{s}({p})" for s, p in zip("QK", tqkv[:2])]
        if self.rope_theta is not None:
            qkv[:2] = [f"R({p})" for p in qkv[:2]]
            tqkv[:2] = [rf"R({p})" for p in tqkv[:2]]
        masked = self.causal or self.window is not None
        mask, tmask = (
            ("mask(", r"\mathrm{mask}(") if self.window else ("causal(", r"\mathrm{causal}(")
        )
        mask, tmask, close = (mask, tmask, ")") if masked else ("", "", "")
        by, tby = (f" / √{k}", rf" / \sqrt{{{k}}}") if self.scale is None else (
            f" · {self.scale:g}", rf" \cdot {self.scale:g}")  # fmt: skip
        cap, tcap, end = ("cap(", r"\mathrm{cap}(", ")") if self.softcap else ("", "", "")
        b_O = " + b_O" if self.has_out_bias else ""
        text = [
            f"{x} ↦ Σ_(h=1..{H}) A^h v^h W_O^h{b_O}",
            f"A^h = softmax({mask}{cap}q^h k^hᵀ{by}{end}{close})",
            f"q^h = {qkv[0]},  k^h = {qkv[1]},  v^h = {qkv[2]}",
        ]
        tex = [
            rf"{x} \mapsto \sum_{{h=1}}^{{{H}}} A^h v^h W_O^h{b_O}",
            rf"A^h = \mathrm{{softmax}}({tmask}{tcap}q^h {{k^h}}^\top{tby}{end}{close})",
            rf"q^h = {tqkv[0]},\ k^h = {tqkv[1]},\ v^h = {tqkv[2]}",
        ]
        if self.window is not None:
            w = self.window
            text.append(f"mask(s)_ij = s_ij if i − {w} < j ≤ i, else −∞  (a sliding window)")
            tex.append(rf"\mathrm{{mask}}(s)_{{ij}} = s_{{ij}}\ (i - {w} < j \leq i),\ -\infty")
        elif self.causal:
            text.append("causal(s)_ij = s_ij if j ≤ i, else −∞")
            tex.append(r"\mathrm{causal}(s)_{ij} = s_{ij}\ (j \leq i),\ -\infty\ (j > i)")
        if self.softcap is not None:
            c = self.softcap
            text.append(f"cap(s) = {c:g} · tanh(s / {c:g})")
            tex.append(rf"\mathrm{{cap}}(s) = {c:g} \tanh(s / {c:g})")
        if G != H:
            text.append(f"g(h) = ⌈h / {H // G}⌉  ({G} key/value heads shared by {H} query heads)")
            tex.append(rf"g(h) = \lceil h / {H // G} \rceil")
        if self.qk_norm is not None:
            over = "each head's k coordinates" if self.qk_norm == "head" else "all heads together"
            g = "1 + γ_Q, 1 + γ_K" if self.qk_norm_offset else "γ_Q, γ_K"
            text.append(f"N_Q, N_K: RMSNorm ({g}, ε = {self.qk_norm_eps:g}) over {over}")
            one = "1 + " if self.qk_norm_offset else ""
            rms = r"\mathrm{RMSNorm}"
            tex.append(rf"N_Q, N_K:\ {rms}_{{{one}\gamma_Q}}, {rms}_{{{one}\gamma_K}}")
        if self.rope_theta is not None:
            part = "" if r == k else f" (the first {r} of the {k} coordinates; the rest pass)"
            text.append(
                f"R (RoPE): at position i, rotate (u_j, u_(j+{r // 2})) by the angle "
                f"i·{self.rope_theta:g}^(−2j/{r});  i, j counted from 0{part}"
            )
            tex.append(
                rf"R:\ (u_j, u_{{j+{r // 2}}}) \mapsto \mathrm{{rot}}_{{i\,\theta^{{-2j/{r}}}}}"
                rf"(u_j, u_{{j+{r // 2}}}),\ \theta = {self.rope_theta:g}"
            )
        fixed = (
            2 * d * k * (2 * H + 2 * G)  # the projections W_Q, W_K, W_V and W_O
            + ((H + 2 * G) * k if self.bias else 0)
            + (d if self.has_out_bias else 0)
            + (4 * (H + G) * k if self.qk_norm else 0)  # square, mean, scale, γ (1 + γ: once)
            + (3 * (H + G) * r if self.rope_theta is not None else 0)  # two products and a sum
        )
        per_key = (
            4 * H * k  # the score q kᵀ and the mix A v
            + H * (5 + masked + (self.window is not None))  # scale, softmax (4), the mask
            + 2 * H * (self.softcap is not None)  # s / c and c · tanh
        )
        computed, seen = self.keys(T)
        flops, model = fixed + round(per_key * computed), fixed + round(per_key * seen)
        return Term(tuple(text), tuple(tex), flops, model)

    def keys(self, T: int) -> tuple[float, float]:
        """(keys a query is scored against as computed, as the math sees them), the mean over
        the T queries: dense computes all T (the mask is applied, not exploited); blockwise
        the key blocks it visits (causal: about half); the math the keys the mask keeps,
        (T + 1)/2 causal, at most ``window`` (cuDNN's kernel is counted as the math)."""
        w = self.window
        if w is not None and w < T:  # Σ_i min(i + 1, w) / T
            seen = (w * (w + 1) / 2 + (T - w) * w) / T
        else:
            seen = (T + 1) / 2 if self.causal else T
        how = self.how(T)
        if how == "blockwise":
            B = min(self.block, T)
            pairs = block_pairs(T, T, self.block, causal=self.causal, window=self.window)
            return pairs * B * B / T, seen
        return (seen if how == "sdpa" else T), seen

    # -- per-head terms, for circuits ------------------------------------------
    def heads(self, params, x_Td):
        """Each head's write A^h x W_V^h W_O^h (no b_O).   [T,d] → [H,T,d];  Σ_h + b_O = Attn."""
        _, trace = self.forward(params, x_Td)
        return jnp.einsum("htk,hkd->htd", trace[f"{self.name}.z"], params["W_O"])

    def expand_kv(self, W_G):
        """Key/value tensors [G,…] repeated to one per query head [H,…]."""
        return jnp.repeat(W_G, self.H // self.kv_heads, axis=0)

    def W_QK(self, params):
        """W_Q^h W_K^hᵀ.   [H, d, d]: the bilinear form of head h's scores (before 1/√k and
        RoPE's rotation, which a partial rotary applies to the first rotary_dim coordinates
        only). With QK-norm the scores are no bilinear form of the stream: refused."""
        if self.qk_norm is not None:
            raise ValueError(
                f"{self.name}: with qk_norm={self.qk_norm!r} the scores normalise q and k, so "
                "they are not a bilinear form x W_QK yᵀ of the stream; W_QK does not exist"
            )
        return jnp.einsum("hdk,hek->hde", params["W_Q"], self.expand_kv(params["W_K"]))

    def W_OV(self, params):
        """W_V^h W_O^h.   [H, d, d]: what head h writes for each vector it attends to."""
        return jnp.einsum("hdk,hke->hde", self.expand_kv(params["W_V"]), params["W_O"])
