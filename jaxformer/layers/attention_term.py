"""Attention's term, for describe: its formula and its FLOPs per token (a face of
``Attention``, beside it). The FLOPs are counted twice (``core.term``): as computed
(dense attention scores every key; blockwise the key blocks it visits) and as the math
needs them (the keys the mask keeps)."""

from __future__ import annotations

from ..core import Term
from .blockwise import block_pairs
from .chunked import chunks


class AttentionTerm:
    """The term of ``Attention`` (its fields: H, G, k, d, window, causal, …)."""

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
        the T queries: dense computes all T (the mask is applied, not exploited); chunked the
        keys each chunk of queries sees; blockwise the key blocks it visits (causal: about
        half); the math the keys the mask keeps, (T + 1)/2 causal, at most ``window``
        (cuDNN's kernel is counted as the math)."""
        w = self.window
        if w is not None and w < T:  # Σ_i min(i + 1, w) / T
            seen = (w * (w + 1) / 2 + (T - w) * w) / T
        else:
            seen = (T + 1) / 2 if self.causal else T
        how = self.how(T)
        if how == "chunked":  # each chunk's rows against its keys
            spans = chunks(T, T, self.block, causal=self.causal, window=self.window)
            return sum((b - a) * (hi - lo) for a, b, lo, hi in spans) / T, seen
        if how == "blockwise":
            B = min(self.block, T)
            pairs = block_pairs(T, T, self.block, causal=self.causal, window=self.window)
            return pairs * B * B / T, seen
        return (seen if how == "sdpa" else T), seen
