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


ACT = {"gelu_tanh": gelu_tanh, "gelu": gelu_exact, "relu": lambda x: np.maximum(x, 0)}


def layer_norm(x, gamma, beta, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


def rms_norm(x, gamma, eps):
    return gamma * x / np.sqrt((x**2).mean(-1, keepdims=True) + eps)


def rope(x, theta):
    """Rotate pairs (j, j + k/2) of each row i by i·theta^(-2j/k), with a 2×2 rotation."""
    T, k = x.shape
    out = np.empty_like(x)
    for i in range(T):
        for j in range(k // 2):
            a = i * theta ** (-2 * j / k)
            c, s = math.cos(a), math.sin(a)
            out[i, j] = c * x[i, j] - s * x[i, j + k // 2]
            out[i, j + k // 2] = s * x[i, j] + c * x[i, j + k // 2]
    return out


def head(x, p, h, causal=True, rope_theta=None):
    """One head's write A^h (x W_V^g) W_O^h, for query head h (key/value head g)."""
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
    return softmax(s) @ v @ p["W_O"][h]


def attention(x, p, causal=True, rope_theta=None):
    H = p["W_Q"].shape[0]
    out = sum(head(x, p, h, causal, rope_theta) for h in range(H))
    return out + (p["b_O"] if "b_O" in p else 0)


def mlp(x, p, act="gelu_tanh"):
    return ACT[act](x @ p["W_in"] + p["b_in"]) @ p["W_out"] + p["b_out"]


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
