"""An independent numpy float64 reference for a model whose attention patterns, norm
scales and MLP outputs are frozen at a trace: every path term written out by hand from
the weights, and the frozen forward pass they must sum to. Shares no code with
jaxformer.circuits; reads the model's layout from its parameter tree."""

import math
import re

import numpy as np


def f64(tree):
    if isinstance(tree, dict):
        return {k: f64(v) for k, v in tree.items()}
    return np.asarray(tree, np.float64)


class Frozen:
    def __init__(self, params, tokens, points, angles=None):
        """``angles``: RoPE's [T, k/2] angle table (None without RoPE)."""
        p, pts = f64(params), f64(points)
        self.t, self.T = np.asarray(tokens), len(tokens)
        b = p["blocks"]
        self.attn, self.ln1, self.mlp_out = b["attn"], b.get("ln1"), None
        self.L, self.H = self.attn["W_Q"].shape[:2]
        self.G = self.attn["W_K"].shape[1]
        self.bias = "b_Q" in self.attn
        self.A = pts["blocks"]["attn.pattern"]
        self.s1 = pts["blocks"].get("ln1.scale")
        if "mlp" in b:
            self.mlp_out = pts["blocks"]["mlp"]
        self.ln_f, self.s_f = p.get("ln_f"), pts.get("ln_f.scale")
        self.W_E = p["embed"]["W_E"]
        self.P = p["pos"]["W_pos"][: self.T] if "pos" in p else None
        self.W_U = p["unembed"]["W_U"] if "W_U" in p.get("unembed", {}) else self.W_E.T
        self.b_U = p.get("unembed", {}).get("b_U")
        self.angles = None if angles is None else np.asarray(angles, np.float64)

    # -- the frozen maps ------------------------------------------------------------
    @staticmethod
    def norm(ln, s, x):
        """s_t · γ ⊙ (x_t − mean x_t) for LayerNorm (it has β), s_t · γ ⊙ x_t for RMSNorm."""
        if ln is None:
            return x
        if ln and "beta" in ln:
            x = x - x.mean(-1, keepdims=True)
        return x * s[:, None] * ln["gamma"] if ln else x * s[:, None]

    def ln1_at(self, l):
        return None if self.ln1 is None else {k: v[l] for k, v in self.ln1.items()}

    def head(self, l, h, y):
        """A^{l,h} y W_V^{l,g} W_O^{l,h}."""
        g = h // (self.H // self.G)
        return self.A[l, h] @ y @ self.attn["W_V"][l, g] @ self.attn["W_O"][l, h]

    def beta1(self, l):
        ln = self.ln1_at(l)
        return None if ln is None or "beta" not in ln else ln["beta"]

    # -- the frozen forward pass ------------------------------------------------------
    def x0(self):
        return self.W_E[self.t] + (0 if self.P is None else self.P)

    def stream(self, n):
        """The stream entering block n."""
        x = self.x0()
        for l in range(n):
            ln = self.ln1_at(l)
            y = self.norm(ln, self.s1[l] if ln else None, x)
            if self.beta1(l) is not None:
                y = y + self.beta1(l)
            out = 0
            for h in range(self.H):
                g = h // (self.H // self.G)
                v = y @ self.attn["W_V"][l, g] + (self.attn["b_V"][l, g] if self.bias else 0)
                out = out + self.A[l, h] @ v @ self.attn["W_O"][l, h]
            x = x + out + (self.attn["b_O"][l] if self.bias else 0)
            if self.mlp_out is not None:
                x = x + self.mlp_out[l]
        return x

    def readout(self, x):
        return self.norm(self.ln_f, self.s_f, x) @ self.W_U

    def logits(self):
        out = self.readout(self.stream(self.L))
        if self.ln_f and "beta" in self.ln_f:
            out = out + self.ln_f["beta"] @ self.W_U
        return out + (0 if self.b_U is None else self.b_U)

    # -- the path terms ---------------------------------------------------------------
    def labels(self):
        """Every path label, enumerated from the layout."""
        current = ["embed"] + (["pos"] if self.P is not None else [])
        for l in range(self.L):
            sources = current + ([f"L{l}.ln1.beta"] if self.beta1(l) is not None else [])
            new = [f"L{l}H{h}∘{s}" for h in range(self.H) for s in sources]
            if self.bias:
                new += [f"L{l}H{h}.b_V" for h in range(self.H)] + [f"L{l}.b_O"]
            if self.mlp_out is not None:
                new.append(f"L{l}.mlp")
            current = current + new
        consts = ["ln_f.beta"] if self.ln_f and "beta" in self.ln_f else []
        return current + consts + (["b_U"] if self.b_U is not None else [])

    def source(self, name):
        ones = np.ones((self.T, 1))
        if name == "embed":
            return self.W_E[self.t]
        if name == "pos":
            return self.P
        if m := re.fullmatch(r"L(\d+)H(\d+)\.b_V", name):
            l, h = map(int, m.groups())
            g = h // (self.H // self.G)
            return self.A[l, h] @ (ones * self.attn["b_V"][l, g]) @ self.attn["W_O"][l, h]
        if m := re.fullmatch(r"L(\d+)\.b_O", name):
            return ones * self.attn["b_O"][int(m[1])]
        if m := re.fullmatch(r"L(\d+)\.mlp", name):
            return self.mlp_out[int(m[1])]
        raise KeyError(name)

    def stream_term(self, label):
        *heads, src = label.split("∘")
        if m := re.fullmatch(r"L(\d+)\.ln1\.beta", src):  # β enters the next head unnormed
            l, h = map(int, re.fullmatch(r"L(\d+)H(\d+)", heads.pop()).groups())
            assert l == int(m[1])
            x = self.head(l, h, np.ones((self.T, 1)) * self.beta1(l))
        else:
            x = self.source(src)
        for op in reversed(heads):
            l, h = map(int, re.fullmatch(r"L(\d+)H(\d+)", op).groups())
            ln = self.ln1_at(l)
            x = self.head(l, h, self.norm(ln, self.s1[l] if ln else None, x))
        return x

    def logit_term(self, label):
        ones = np.ones((self.T, 1))
        if label == "ln_f.beta":
            return ones * (self.ln_f["beta"] @ self.W_U)
        if label == "b_U":
            return ones * self.b_U
        return self.readout(self.stream_term(label))

    # -- the score terms --------------------------------------------------------------
    def rotate(self, x):
        if self.angles is None:
            return x
        k = x.shape[-1]
        c, s = np.cos(self.angles), np.sin(self.angles)
        x1, x2 = x[:, : k // 2], x[:, k // 2 :]
        return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], -1)

    def score_terms(self, l):
        """direct / Q / K / QK terms of block l's scores, [H, T, T] each."""
        x_dir = self.x0()
        x_comp = self.stream(l) - x_dir
        ln = self.ln1_at(l)
        y_dir = self.norm(ln, self.s1[l] if ln else None, x_dir)
        y_comp = self.norm(ln, self.s1[l] if ln else None, x_comp)
        if self.beta1(l) is not None:
            y_dir = y_dir + self.beta1(l)
        out = {k: [] for k in ("direct", "Q", "K", "QK")}
        for h in range(self.H):
            g = h // (self.H // self.G)
            W_Q, W_K = self.attn["W_Q"][l, h], self.attn["W_K"][l, g]
            b_Q = self.attn["b_Q"][l, h] if self.bias else 0
            b_K = self.attn["b_K"][l, g] if self.bias else 0
            q_d, q_c = self.rotate(y_dir @ W_Q + b_Q), self.rotate(y_comp @ W_Q)
            k_d, k_c = self.rotate(y_dir @ W_K + b_K), self.rotate(y_comp @ W_K)
            r = 1 / math.sqrt(W_Q.shape[-1])
            out["direct"].append(q_d @ k_d.T * r)
            out["Q"].append(q_c @ k_d.T * r)
            out["K"].append(q_d @ k_c.T * r)
            out["QK"].append(q_c @ k_c.T * r)
        return {k: np.stack(v) for k, v in out.items()}
