"""Token embedding E: V^T → R^{T×d} and unembedding U: R^{T×d} → R^{T×V}."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from ..core import Map, Param, Real, Term, Tokens
from ..core.stored import StoredMatrix


@dataclass(frozen=True, repr=False)
class Embedding(Map):
    """E(t)_i = W_E[t_i] for t_i ∈ [0, V), NaN^d otherwise.   V^T → R^{T×d};  W_E: [V, d].

    ``context`` bounds T (the model's context length), checked at the domain. Under
    ``jit`` nothing can raise, and a plain gather would clamp an id ≥ V to row V-1 and
    wrap a negative one to row V+t: another token's embedding, silently. So an id
    outside [0, V), negative ones included, gives a row of NaN, and the logits of that
    sequence are NaN (attention weighs the NaN values by 0, and 0 · NaN = NaN), never
    another token's numbers; the other sequences of a batch are untouched. (Eager entry points,
    ``jaxformer.logits`` and ``generate``, refuse such ids before they run.)

    ``scale`` (Gemma: √d) multiplies the rows: x_i = scale · W_E[t_i], the factor cast to
    W_E's dtype first, as HF's Gemma does (so bf16 weights see bf16(√d)).
    """

    V: int
    d: int
    context: int | None = None
    std: float = 0.02
    name: str = "embed"
    scale: float | None = None
    tokenwise = True

    domain = property(
        lambda self: Tokens(self.V, "T", limits={"T": self.context} if self.context else None)
    )
    codomain = property(lambda self: Real("T", self.d))

    def spec(self):
        return {"W_E": Param((self.V, self.d), ("V", "d"), self.std)}

    def apply(self, params, t_T):
        W_E = params["W_E"]
        inside = (t_T >= 0) & (t_T < self.V)
        rows = jnp.take(W_E, jnp.where(inside, t_T, 0), axis=0)
        if self.scale is not None:
            rows = rows * jnp.asarray(self.scale, W_E.dtype)
        return jnp.where(inside[..., None], rows, jnp.nan).astype(W_E.dtype)

    def term(self, T, x):
        if self.scale is None:
            return Term(("t ↦ x,  x_i = W_E[t_i]",), (r"t \mapsto x,\ x_i = W_E[t_i]",))
        c = f"{self.scale:.6g}"
        return Term(
            (f"t ↦ x,  x_i = {c} · W_E[t_i]",),
            (rf"t \mapsto x,\ x_i = {c}\, W_E[t_i]",),
            self.d,  # the scale, one product per coordinate
        )


@dataclass(frozen=True, repr=False)
class Unembedding(Map):
    """U(x) = x W_U + b_U.   R^{T×d} → R^{T×V};  W_U: [d, V], b_U: [V] (if ``bias``).

    The logits are returned in float32 whatever the compute dtype, since the
    softmax and the loss that read them need the range. ``softcap`` c (Gemma 2) caps
    them: z ↦ c · tanh(z / c), in float32.
    """

    d: int
    V: int
    bias: bool = False
    std: float = 0.02
    name: str = "unembed"
    softcap: float | None = None
    tokenwise = True
    matrices = ("W_U",)

    domain = property(lambda self: Real("T", self.d))
    codomain = property(lambda self: Real("T", self.V))

    def spec(self):
        p = {"W_U": Param((self.d, self.V), ("d", "V"), self.std)}
        return p | {"b_U": Param((self.V,), ("V",))} if self.bias else p

    def apply(self, params, x_Td):
        W_U = params["W_U"].astype(x_Td.dtype)
        if isinstance(W_U, StoredMatrix):  # a decode loop's (core.stored): float32 products
            logits = x_Td @ W_U.astype(jnp.float32)
        else:
            logits = jnp.einsum("td,dv->tv", x_Td, W_U, preferred_element_type=jnp.float32)
        if self.bias:
            logits = logits + params["b_U"]
        logits = logits.astype(jnp.float32)
        if self.softcap is not None:
            logits = self.softcap * jnp.tanh(logits / self.softcap)
        return logits

    def term(self, T, x):
        b = " + b_U" if self.bias else ""
        flops = 2 * self.d * self.V + self.bias * self.V
        if self.softcap is None:
            return Term((f"{x} ↦ {x} W_U{b}",), (rf"{x} \mapsto {x} W_U{b}",), flops)
        c = f"{self.softcap:g}"
        return Term(
            (f"{x} ↦ {c} · tanh(({x} W_U{b}) / {c})  (the logits soft-capped at ±{c})",),
            (rf"{x} \mapsto {c} \tanh(({x} W_U{b}) / {c})",),
            flops + 2 * self.V,  # z / c and c · tanh
        )
