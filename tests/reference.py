"""Independent numpy (float64) references: each formula written plainly, head by
head and layer by layer, sharing no code with jaxformer."""

import math

import numpy as np


def f64(tree):
    if isinstance(tree, dict):
        return {k: f64(v) for k, v in tree.items()}
    return np.asarray(tree, np.float64)


def softmax(s):
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def gelu_exact(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def silu(x):
    return x / (1 + np.exp(-x))


ACT = {
    "gelu_tanh": gelu_tanh,
    "gelu": gelu_exact,
    "relu": lambda x: np.maximum(x, 0),
    "relu2": lambda x: np.maximum(x, 0) ** 2,
    "silu": silu,
}


def layer_norm(x, gamma, beta, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


def rms_norm(x, gamma, eps):
    return gamma * x / np.sqrt((x**2).mean(-1, keepdims=True) + eps)


def rope_angles(T, k, theta):
    """The angle table a[i, j] = i·theta^(-2j/k), j < k/2.   [T, k/2]"""
    return np.array([[i * theta ** (-2 * j / k) for j in range(k // 2)] for i in range(T)])


def rope(x, theta):
    """Rotate pairs (j, j + k/2) of each row i by i·theta^(-2j/k), with a 2×2 rotation."""
    T, k = x.shape
    out = np.empty_like(x)
    angles = rope_angles(T, k, theta)
    for i in range(T):
        for j in range(k // 2):
            c, s = math.cos(angles[i, j]), math.sin(angles[i, j])
            out[i, j] = c * x[i, j] - s * x[i, j + k // 2]
            out[i, j + k // 2] = s * x[i, j] + c * x[i, j + k // 2]
    return out


def head_parts(x, p, h, causal=True, rope_theta=None):
    """(scores, pattern, z) of query head h (key/value head g = h // (H/G)): the scores
    q kᵀ/√k (−inf above the diagonal when causal), A = softmax(scores), z = A v."""
    H, G = p["W_Q"].shape[0], p["W_K"].shape[0]
    g = h // (H // G)
    q = x @ p["W_Q"][h] + (p["b_Q"][h] if "b_Q" in p else 0)
    k = x @ p["W_K"][g] + (p["b_K"][g] if "b_K" in p else 0)
    v = x @ p["W_V"][g] + (p["b_V"][g] if "b_V" in p else 0)
    if rope_theta is not None:
        q, k = rope(q, rope_theta), rope(k, rope_theta)
    s = q @ k.T / math.sqrt(q.shape[-1])
    if causal:
        T = x.shape[0]
        s = np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf)
    A = softmax(s)
    return s, A, A @ v


def head(x, p, h, causal=True, rope_theta=None):
    """One head's write A^h (x W_V^g) W_O^h, for query head h (key/value head g)."""
    return head_parts(x, p, h, causal, rope_theta)[2] @ p["W_O"][h]


def attention(x, p, causal=True, rope_theta=None):
    H = p["W_Q"].shape[0]
    out = sum(head(x, p, h, causal, rope_theta) for h in range(H))
    return out + (p["b_O"] if "b_O" in p else 0)


def mlp(x, p, act="gelu_tanh"):
    return ACT[act](x @ p["W_in"] + p.get("b_in", 0)) @ p["W_out"] + p.get("b_out", 0)


def swiglu(x, p):
    return (silu(x @ p["W_gate"]) * (x @ p["W_in"])) @ p["W_out"]


def layer(p, i):
    return {k: v[i] for k, v in p.items()}


def gpt2(params, tokens, c):
    p = f64(params)
    x = p["embed"]["W_E"][tokens] + p["pos"]["W_pos"][: len(tokens)]
    b = p["blocks"]
    for i in range(c.n_layers):
        ln1, ln2 = layer(b["ln1"], i), layer(b["ln2"], i)
        x = x + attention(layer_norm(x, ln1["gamma"], ln1["beta"], c.norm_eps), layer(b["attn"], i))
        x = x + mlp(layer_norm(x, ln2["gamma"], ln2["beta"], c.norm_eps), layer(b["mlp"], i))
    x = layer_norm(x, p["ln_f"]["gamma"], p["ln_f"]["beta"], c.norm_eps)
    W_U = p["embed"]["W_E"].T if c.tied else p["unembed"]["W_U"]
    return x @ W_U


def llama(params, tokens, c):
    p = f64(params)
    x = p["embed"]["W_E"][tokens]
    b = p["blocks"]
    for i in range(c.n_layers):
        h = rms_norm(x, b["ln1"]["gamma"][i], c.norm_eps)
        x = x + attention(h, layer(b["attn"], i), rope_theta=c.rope_theta)
        x = x + swiglu(rms_norm(x, b["ln2"]["gamma"][i], c.norm_eps), layer(b["mlp"], i))
    x = rms_norm(x, p["ln_f"]["gamma"], c.norm_eps)
    W_U = p["embed"]["W_E"].T if c.tied else p["unembed"]["W_U"]
    return x @ W_U


def sinusoids(T, d, base=10000.0):
    """Vaswani et al.'s positions, P[i, 2j] = sin(i·base^(-2j/d)) and
    P[i, 2j+1] = cos(i·base^(-2j/d)).   [T, d]"""
    P = np.empty((T, d))
    for i in range(T):
        for c in range(d):
            a = i * base ** (-2 * (c // 2) / d)
            P[i, c] = math.sin(a) if c % 2 == 0 else math.cos(a)
    return P


def norm(x, p, c):
    """The family's norm, and its scale s_t = 1/sqrt(mean((x_t − μ_t)²) + ε) (LayerNorm,
    gpt2) or 1/sqrt(mean(x_t²) + ε) (RMSNorm, llama)."""
    if c.family == "gpt2":
        x = x - x.mean(-1, keepdims=True)
    s = 1 / np.sqrt((x**2).mean(-1) + c.norm_eps)
    y = x * s[:, None] * p["gamma"]
    return (y + p["beta"] if "beta" in p else y), s


def forward(params, tokens, c, points=None, patch=None):
    """The logits [T, V] of a model of config ``c`` (either family; the layout is read off
    the parameter tree: blocks without "mlp" are attention-only, a model without "ln1" or
    "ln_f" lacks that norm, an "unembed" without "W_U" is tied to W_E).

    ``points``: a dict, filled with what the forward pass computed, stacked over layers
    under "blocks" as jaxformer's trace names them ("resid_pre", "ln1.scale",
    "attn.scores", "attn.pattern", "attn.z", "attn", "resid_mid", "ln2.scale", "mlp",
    "resid_post") and "ln_f.scale". ``patch(site, l, x)``: the value the pass continues
    with at each of those stream sites (activation patching by hand); the identity if None.
    """
    p = f64(params)
    patch = patch or (lambda site, l, x: x)
    rec = {}
    put = lambda key, v: rec.setdefault(key, []).append(v)
    tokens = np.asarray(tokens)
    T = len(tokens)
    x = p["embed"]["W_E"][tokens]
    if "W_pos" in p.get("pos", {}):
        x = x + p["pos"]["W_pos"][:T]
    elif c.positional == "sinusoidal":
        x = x + sinusoids(T, x.shape[-1])
    b = p["blocks"]
    L, H = b["attn"]["W_Q"].shape[:2]
    theta = c.rope_theta if c.positional == "rope" else None
    for l in range(L):
        x = patch("resid_pre", l, x)
        put("resid_pre", x)
        a = layer(b["attn"], l)
        h = x
        if "ln1" in b:
            h, s = norm(x, layer(b["ln1"], l), c)
            put("ln1.scale", s)
        parts = [head_parts(h, a, i, rope_theta=theta) for i in range(H)]
        put("attn.scores", np.stack([s for s, _, _ in parts]))
        put("attn.pattern", np.stack([A for _, A, _ in parts]))
        z = patch("z", l, np.stack([z for _, _, z in parts]))
        put("attn.z", z)
        out = sum(z[i] @ a["W_O"][i] for i in range(H)) + (a["b_O"] if "b_O" in a else 0)
        out = patch("attn", l, out)
        put("attn", out)
        x = patch("resid_mid", l, x + out)
        put("resid_mid", x)
        if "mlp" in b:
            h, s = norm(x, layer(b["ln2"], l), c)
            put("ln2.scale", s)
            m = layer(b["mlp"], l)
            out = swiglu(h, m) if "W_gate" in m else mlp(h, m, c.activation)
            out = patch("mlp", l, out)
            put("mlp", out)
            x = patch("resid_post", l, x + out)
            put("resid_post", x)
    if points is not None:
        points["blocks"] = {k: np.stack(v) for k, v in rec.items()}
    if "ln_f" in p:
        x, s = norm(x, p["ln_f"], c)
        if points is not None:
            points["ln_f.scale"] = s
    u = p.get("unembed", {})
    W_U = u["W_U"] if "W_U" in u else p["embed"]["W_E"].T
    return x @ W_U + (u["b_U"] if "b_U" in u else 0)


def log_softmax(s):
    s = s - s.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


def next_token_nll(logits_fn, ids, T):
    """(Σ_t −log p(ids[t] | the window before t), the number of targets) over every target
    t = 1 … N−1 once: windows of T tokens starting at 0, T, 2T, …, the last one moved back
    to end at N−1, counting only the targets the window before did not. ``logits_fn``:
    [T] ids → [T, V] logits."""
    ids = np.asarray(ids, np.int64)
    N, total, count, first = len(ids), 0.0, 0, 1  # first: the next target not yet counted
    while first < N:
        start = min(first - 1, N - 1 - T)
        x, y = ids[start : start + T], ids[start + 1 : start + T + 1]
        nll = -log_softmax(np.asarray(logits_fn(x), np.float64))[np.arange(T), y]
        new = nll[first - (start + 1) :]
        total, count, first = total + new.sum(), count + len(new), start + T + 1
    return total, count
