"""MLPs as token maps R^d → R^d (lift to R^{T×d} with ``tokenwise``).

    MLP(x)    = φ(x W_in + b_in) W_out + b_out    φ: GELU (tanh or exact), ReLU, ReLU², SiLU
    SwiGLU(x) = (silu(x W_gate) ⊙ (x W_in)) W_out         (LLaMA; no biases)
    GeGLU(x)  = (gelu_tanh(x W_gate) ⊙ (x W_in)) W_out    (Gemma: SwiGLU with φ = tanh-GELU)

The hidden point φ(·) ∈ R^m (the neurons) is recorded in the trace as
``"<name>.hidden"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax

from ..core import Map, Param, Real, Term

ACTIVATIONS = {
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "relu2": lambda x: jax.numpy.square(jax.nn.relu(x)),  # So et al. 2021 (Primer)
    "silu": jax.nn.silu,
}


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
    "relu2": ("φ(u) = max(u, 0)²", r"\varphi(u) = \max(u, 0)^2", 2),
    "silu": ("φ(u) = u / (1 + e^(−u))", r"\varphi(u) = u / (1 + e^{-u})", 4),
}
W_IN, W_OUT, W_GATE = (rf"W_{{\mathrm{{{s}}}}}" for s in ("in", "out", "gate"))
B_IN, B_OUT = r"b_{\mathrm{in}}", r"b_{\mathrm{out}}"


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class _TokenMLP(Map):
    """What the MLPs share: R^d → R^d on one token, the hidden point in the trace."""

    tokenwise = True
    domain = property(lambda self: Real(self.d))
    codomain = property(lambda self: Real(self.d))

    def apply(self, params, x_d):
        return self.forward(params, x_d)[0]

    def trace_points(self):
        return (self.name, f"{self.name}.hidden")


@dataclass(frozen=True, repr=False)
class MLP(_TokenMLP):
    """x ↦ φ(x W_in + b_in) W_out + b_out.   R^d → R^d;  W_in: [d, m], W_out: [m, d]."""

    d: int
    m: int
    activation: str = "gelu_tanh"
    bias: bool = True
    std: float = 0.02
    out_std: float | None = None
    name: str = "mlp"
    reads = ("W_in",)  # the matrices applied to its input (LayerNorm folding scales their rows)
    matrices = ("W_in", "W_out")

    def __post_init__(self):
        _activation(self.activation)

    def spec(self):
        p = {
            "W_in": Param((self.d, self.m), ("d", "m"), self.std),
            "W_out": Param((self.m, self.d), ("m", "d"), self.out_std or self.std),
        }
        return (
            p | {"b_in": Param((self.m,), ("m",)), "b_out": Param((self.d,), ("d",))}
            if self.bias
            else p
        )

    def forward(self, params, x_d):
        dt = x_d.dtype
        pre = x_d @ params["W_in"].astype(dt)
        if self.bias:
            pre = pre + params["b_in"].astype(dt)
        h = _activation(self.activation)(pre)
        y = h @ params["W_out"].astype(dt)
        if self.bias:
            y = y + params["b_out"].astype(dt)
        return y, {self.name: y, f"{self.name}.hidden": h}

    def term(self, T, x):
        phi_text, phi_tex, phi_flops = PHI[self.activation]
        if self.bias:
            text = f"{x} ↦ φ({x} W_in + b_in) W_out + b_out"
            tex = rf"{x} \mapsto \varphi({x} {W_IN} + {B_IN}) {W_OUT} + {B_OUT}"
        else:
            text = f"{x} ↦ φ({x} W_in) W_out"
            tex = rf"{x} \mapsto \varphi({x} {W_IN}) {W_OUT}"
        d, m = self.d, self.m
        flops = 4 * d * m + phi_flops * m + (m + d if self.bias else 0)
        return Term((text, phi_text), (tex, phi_tex), flops)


@dataclass(frozen=True, repr=False)
class SwiGLU(_TokenMLP):
    """x ↦ (φ(x W_gate) ⊙ x W_in) W_out, φ = silu.   R^d → R^d;  W_gate, W_in: [d, m],
    W_out: [m, d]. ``activation`` sets φ (``GeGLU``: tanh-GELU)."""

    d: int
    m: int
    std: float = 0.02
    out_std: float | None = None
    name: str = "mlp"
    activation: str = "silu"
    reads = ("W_gate", "W_in")
    matrices = ("W_gate", "W_in", "W_out")
    bias = False

    def __post_init__(self):
        _activation(self.activation)

    def spec(self):
        return {
            "W_gate": Param((self.d, self.m), ("d", "m"), self.std),
            "W_in": Param((self.d, self.m), ("d", "m"), self.std),
            "W_out": Param((self.m, self.d), ("m", "d"), self.out_std or self.std),
        }

    def forward(self, params, x_d):
        dt = x_d.dtype
        gate = _activation(self.activation)(x_d @ params["W_gate"].astype(dt))
        h = gate * (x_d @ params["W_in"].astype(dt))
        y = h @ params["W_out"].astype(dt)
        return y, {self.name: y, f"{self.name}.hidden": h}

    def term(self, T, x):
        if self.activation == "silu":
            phi, tphi = "silu", r"\mathrm{silu}"
            rule, trule, flops = (
                "silu(u) = u / (1 + e^(−u))",
                r"\mathrm{silu}(u) = u / (1 + e^{-u})",
                4,
            )
        else:
            phi, tphi = "φ", r"\varphi"
            rule, trule, flops = PHI[self.activation]
        return Term(
            (f"{x} ↦ ({phi}({x} W_gate) ⊙ {x} W_in) W_out", rule),
            (rf"{x} \mapsto ({tphi}({x} {W_GATE}) \odot {x} {W_IN}) {W_OUT}", trule),
            6 * self.d * self.m + (flops + 1) * self.m,  # φ per coordinate, the product ⊙: 1
        )


@dataclass(frozen=True, repr=False)
class GeGLU(SwiGLU):
    """x ↦ (gelu_tanh(x W_gate) ⊙ x W_in) W_out (Gemma).   R^d → R^d;  as ``SwiGLU``."""

    activation: str = "gelu_tanh"
