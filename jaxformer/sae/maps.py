"""The sparse autoencoder as maps: an encoder R^d → R^n, a decoder R^n → R^d, and their
composite R^d → R^d, the reconstruction.

    pre(x) = (x − b_dec) W_enc + b_enc                 W_enc: [d, n], b_enc: [n], b_dec: [d]
    z(x)   = σ(pre(x))                                 the latents, ∈ R^n
    x̂(z)   = z W_dec + b_dec                           W_dec: [n, d], each row unit-norm

with σ one of

    relu       σ(u) = max(u, 0)                               (trained with an L1 penalty)
    topk       σ(u) = max(u, 0) on the k largest u_i, else 0  (Gao et al. 2024)
    jumprelu   σ(u) = u · H(u − θ),  θ = exp(log_threshold)   (Rajamanoharan et al. 2024)

The decoder's rows (the columns of sae-lens' W_decᵀ, one dictionary direction per latent)
are kept unit-norm (``unit_rows``, after every step), and the decoder starts as the
encoder's transpose, normalised: W_dec = unit_rows(W_encᵀ).

JumpReLU's threshold gets its gradient from the straight-through pseudo-derivative with
a rectangle kernel K(u) = 1{|u| < 1/2} of bandwidth ε (the paper's eq. 11, 12):

    ∂/∂θ [u · H(u − θ)] := −(θ/ε) K((u − θ)/ε)        ∂/∂θ H(u − θ) := −(1/ε) K((u − θ)/ε)

and ∂/∂u of the jump is H(u − θ), of the step 0.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Param, Real

VARIANTS = ("topk", "relu", "jumprelu")


def unit_rows(W_nd: jax.Array) -> jax.Array:
    """Each row of W divided by its Euclidean norm.   [n, d] → [n, d]."""
    return W_nd / jnp.maximum(jnp.linalg.norm(W_nd, axis=-1, keepdims=True), 1e-12)


def _rect(u):
    return ((u > -0.5) & (u < 0.5)).astype(u.dtype)


def _sum_to(g, shape):
    """g summed over the axes that broadcasting added (θ: [n] against u: [..., n])."""
    return g.reshape(-1, *shape).sum(0) if g.shape != shape else g


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def jump(u, theta, eps):
    """u · H(u − θ), with the straight-through pseudo-derivative in θ (bandwidth ``eps``)."""
    return u * (u > theta)


def _jump_fwd(u, theta, eps):
    return jump(u, theta, eps), (u, theta)


def _jump_bwd(eps, res, g):
    u, theta = res
    g_u = g * (u > theta)
    g_theta = g * (-theta / eps) * _rect((u - theta) / eps)
    return g_u, _sum_to(g_theta, theta.shape)


jump.defvjp(_jump_fwd, _jump_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def step(u, theta, eps):
    """H(u − θ) ∈ {0, 1}, with the pseudo-derivative −(1/ε) K((u − θ)/ε) in θ, 0 in u."""
    return (u > theta).astype(u.dtype)


def _step_fwd(u, theta, eps):
    return step(u, theta, eps), (u, theta)


def _step_bwd(eps, res, g):
    u, theta = res
    g_theta = g * (-1.0 / eps) * _rect((u - theta) / eps)
    return jnp.zeros_like(u), _sum_to(g_theta, theta.shape)


step.defvjp(_step_fwd, _step_bwd)


def topk_mask(u_Bn: jax.Array, k: int) -> jax.Array:
    """1 where u_i is among the k largest of its row, else 0 (no gradient).  [..., n]."""
    # the k-th largest as the min of the top k: slicing top_k's values instead makes XLA's
    # CPU backend sort each whole row, 10× slower
    kth = jnp.min(jax.lax.top_k(jax.lax.stop_gradient(u_Bn), k)[0], axis=-1, keepdims=True)
    return (u_Bn >= kth).astype(u_Bn.dtype)


@dataclass(frozen=True, repr=False)
class SAE(Map):
    """x ↦ x̂(z(x)), the reconstruction.   R^d → R^d (tokenwise); latents z ∈ R^n.

    ``encoder`` (R^d → R^n) and ``decoder`` (R^n → R^d) are its two halves as maps of
    their own, reading the same params. The formulas act on any leading axes.
    """

    d: int
    n: int
    variant: str = "topk"
    k: int = 32  # topk: latents kept per token
    apply_b_dec_to_input: bool = True
    bandwidth: float = 0.001  # jumprelu: ε of the pseudo-derivative
    threshold: float = 0.001  # jumprelu: θ at init
    name: str = "sae"
    tokenwise = True

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"SAE variant {self.variant!r}: choose one of {', '.join(VARIANTS)}")
        if self.d < 1 or self.n < 1:
            raise ValueError(f"SAE d={self.d}, n={self.n}: both must be at least 1")
        if self.variant == "topk" and not 1 <= self.k <= self.n:
            raise ValueError(f"SAE k={self.k}: choose 1 ≤ k ≤ n={self.n} latents")

    domain = property(lambda self: Real(self.d))
    codomain = property(lambda self: Real(self.d))
    encoder = property(lambda self: Encoder(self))
    decoder = property(lambda self: Decoder(self))

    def spec(self) -> dict:
        s = {
            # std 1/√d: each column of W_enc has norm ≈ 1, as its transpose's rows will exactly
            "W_enc": Param((self.d, self.n), ("d", "n"), std=1 / math.sqrt(self.d)),
            "b_enc": Param((self.n,), ("n",)),
            "W_dec": Param((self.n, self.d), ("n", "d")),
            "b_dec": Param((self.d,), ("d",)),
        }
        if self.variant == "jumprelu":
            s["log_threshold"] = Param((self.n,), ("n",), fill=math.log(self.threshold))
        return s

    def init(self, key: jax.Array) -> dict:
        """A draw of W_enc; W_dec = unit_rows(W_encᵀ); biases 0; θ = ``threshold``."""
        p = super().init(key)
        return {**p, "W_dec": unit_rows(p["W_enc"].T)}

    def pre(self, params, x):
        """(x − b_dec) W_enc + b_enc.   [..., d] → [..., n]."""
        if self.apply_b_dec_to_input:
            x = x - params["b_dec"]
        return x @ params["W_enc"] + params["b_enc"]

    def activate(self, params, u):
        """σ(u), the variant's activation.   [..., n] → [..., n]."""
        if self.variant == "relu":
            return jax.nn.relu(u)
        if self.variant == "topk":
            return jax.nn.relu(u) * topk_mask(u, self.k)
        return jump(u, jnp.exp(params["log_threshold"]), self.bandwidth)

    def encode(self, params, x):
        """z = σ(pre(x)).   [..., d] → [..., n]."""
        return self.activate(params, self.pre(params, x))

    def decode_latents(self, params, z):
        """x̂ = z W_dec + b_dec.   [..., n] → [..., d]. (Not ``decode``: that name is every
        map's cached form, the face generation reads.)"""
        return z @ params["W_dec"] + params["b_dec"]

    def apply(self, params, x):
        return self.decode_latents(params, self.encode(params, x))

    def forward(self, params, x):
        z = self.encode(params, x)
        y = self.decode_latents(params, z)
        return y, {self.name: y, f"{self.name}.latents": z}

    def trace_points(self):
        return (self.name, f"{self.name}.latents")


@dataclass(frozen=True, repr=False)
class Encoder(Map):
    """x ↦ z = σ((x − b_dec) W_enc + b_enc).   R^d → R^n; the SAE's params."""

    sae: SAE
    tokenwise = True
    name = property(lambda self: f"{self.sae.name}.encoder")
    domain = property(lambda self: Real(self.sae.d))
    codomain = property(lambda self: Real(self.sae.n))

    def apply(self, params, x):
        return self.sae.encode(params, x)


@dataclass(frozen=True, repr=False)
class Decoder(Map):
    """z ↦ x̂ = z W_dec + b_dec.   R^n → R^d; the SAE's params."""

    sae: SAE
    tokenwise = True
    name = property(lambda self: f"{self.sae.name}.decoder")
    domain = property(lambda self: Real(self.sae.n))
    codomain = property(lambda self: Real(self.sae.d))

    def apply(self, params, z):
        return self.sae.decode_latents(params, z)
