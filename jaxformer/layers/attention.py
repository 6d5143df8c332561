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

How it is computed is a field too: ``impl="dense"`` materialises the [H,T,T] scores and
is differentiated by autodiff; ``"chunked"`` scores chunks of ``block`` queries against
only the keys they see, with FlashAttention's backward from the saved exponentials
(``chunked.py``: the masked triangle skipped, dense memory); ``"blockwise"`` is
FlashAttention (``blockwise.py``: O(T·block) memory, fully masked blocks skipped, a
recomputing VJP); ``"auto"`` takes chunked below T = ``BLOCKWISE_FROM``, blockwise from
there and, on GPU, ``jax.nn.dot_product_attention`` (cuDNN) where it applies. The trace
(for circuits) always computes densely: it returns the pattern.

Computed batched over heads with einsum; ``heads``, ``W_QK`` and ``W_OV`` give
the per-head terms that the circuits module reads. Its faces are beside it: its cached
form in ``attention_cache.py``, its formula and FLOPs in ``attention_term.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Param, Real
from ..core.documents import current
from .attention_cache import QKV, CachedAttention
from .attention_term import AttentionTerm
from .blockwise import blockwise_attention, sdpa_attention
from .chunked import chunked_attention
from .positional import rope

BLOCKWISE_FROM = 1024  # "auto": blockwise attention from this T on (CPU: chunked is faster below)
IMPLS = ("dense", "chunked", "blockwise", "auto")


@dataclass(frozen=True, repr=False)
class Attention(CachedAttention, AttentionTerm, Map):
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
    block: int = 128  # positions per block (blockwise), queries per chunk (chunked)

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
        """Σ_h z^h W_O^h + b_O.   [H,T,k] → [T,d]; W_O [H,k,d], or [H·k, d] (the decode
        layout: the heads' z side by side, [T, H·k], times one matrix)."""
        W_O = params["W_O"].astype(z_HTk.dtype)
        if W_O.ndim == 2:
            y = jnp.swapaxes(z_HTk, 0, 1).reshape(z_HTk.shape[1], -1) @ W_O
        else:
            y = jnp.einsum("htk,hkd->td", z_HTk, W_O)
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
        attend = chunked_attention if how == "chunked" else blockwise_attention
        return attend(q, k, v, **kw, block=self.block, segments=seg)

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
        """How ``apply`` computes at length T: "dense", "chunked", "blockwise" or "sdpa"
        (cuDNN's fused kernel, on GPU, for the half-precision inputs it takes, no soft-capping
        and one document: packed documents go chunked or blockwise)."""
        if self.impl != "auto":
            return self.impl
        half = jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
        one_doc = current() is None
        if jax.default_backend() == "gpu" and half and self.softcap is None and one_doc:
            return "sdpa"
        return "blockwise" if T >= BLOCKWISE_FROM else "chunked"

    def trace_points(self):
        n = self.name
        return (n, f"{n}.scores", f"{n}.pattern", f"{n}.z")

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
