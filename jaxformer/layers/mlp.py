"""MLPs as token maps R^d → R^d (lift to R^{T×d} with ``tokenwise``).

    MLP(x)    = φ(x W_in + b_in) W_out + b_out           φ ∈ {GELU (tanh or exact), ReLU}
    SwiGLU(x) = (silu(x W_gate) ⊙ (x W_in)) W_out         (LLaMA; no biases)

The hidden point φ(·) ∈ R^m (the neurons) is recorded in the trace as
``"<name>.hidden"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax

from ..core import Map, Param, Real

ACTIVATIONS = {
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


@dataclass(frozen=True, repr=False)
class MLP(Map):
    """x ↦ φ(x W_in + b_in) W_out + b_out.   R^d → R^d;  W_in: [d, m], W_out: [m, d]."""

    d: int
    m: int
    activation: str = "gelu_tanh"
    bias: bool = True
    std: float = 0.02
    out_std: float | None = None
    name: str = "mlp"

    def __post_init__(self):
        _activation(self.activation)

    domain = property(lambda self: Real(self.d))
    codomain = property(lambda self: Real(self.d))

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

    def apply(self, params, x_d):
        return self.forward(params, x_d)[0]


@dataclass(frozen=True, repr=False)
class SwiGLU(Map):
    """x ↦ (silu(x W_gate) ⊙ x W_in) W_out.   R^d → R^d;  W_gate, W_in: [d, m], W_out: [m, d]."""

    d: int
    m: int
    std: float = 0.02
    out_std: float | None = None
    name: str = "mlp"

    domain = property(lambda self: Real(self.d))
    codomain = property(lambda self: Real(self.d))

    def spec(self):
        return {
            "W_gate": Param((self.d, self.m), ("d", "m"), self.std),
            "W_in": Param((self.d, self.m), ("d", "m"), self.std),
            "W_out": Param((self.m, self.d), ("m", "d"), self.out_std or self.std),
        }

    def forward(self, params, x_d):
        dt = x_d.dtype
        h = jax.nn.silu(x_d @ params["W_gate"].astype(dt)) * (x_d @ params["W_in"].astype(dt))
        y = h @ params["W_out"].astype(dt)
        return y, {self.name: y, f"{self.name}.hidden": h}

    def apply(self, params, x_d):
        return self.forward(params, x_d)[0]
