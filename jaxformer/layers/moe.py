"""A mixture of experts: a gated sum of maps, R^{T×d} → R^{T×d}, token by token.

    p_t = softmax(x_t W_R)                      router probabilities, W_R: [d, E]
    S_t = the k experts of largest p_t          (top-k)
    g_te = p_te / Σ_{e' ∈ S_t} p_te'  (renormalize; Mixtral, Qwen3-MoE's norm_topk_prob)
         = p_te                        (otherwise), for e ∈ S_t; 0 elsewhere
    y_t = Σ_{e ∈ S_t} g_te · E_e(x_t),   E_e(x) = (silu(x W_gate^e) ⊙ x W_in^e) W_out^e

Experts are stacked on an ``E`` axis: W_gate, W_in: [E, d, m], W_out: [E, m, d]. Two
evaluations of the same map (``impl``):

    dense    every expert on every token, weighted by g (zero off S_t): E·T expert calls
    routed   the T·k (token, expert) pairs sorted by expert into tiles of b rows, each
             tile one expert's, so only the chosen experts compute: T·k rows plus the
             padding of each nonempty group to a whole tile (``routing.py``). No token
             is dropped. On a mesh with an expert axis the same product runs with the
             experts split over devices (``parallel/experts.py``, set as ``routing``).

The trace adds the router logits, the gates and chosen experts, the load per expert
(the fraction of the T·k pairs each receives), the fraction of pairs dropped (nonzero
only over an expert axis with a capacity) and the two auxiliary losses of a batch
(``balance``: E Σ_e f_e P̄_e, Switch/Mixtral; ``z``: mean (logsumexp x W_R)², ST-MoE),
each over the T tokens of one sequence, and ``aux`` = w_b·balance + w_z·z, the term the
training objective adds per layer (``train.loss.objective``).

    f_e = |{(t, j): S_tj = e}| / (T k)     the load: expert e's share of the T·k pairs
    P̄_e = mean_t p_te                      its mean router probability
E Σ_e f_e P̄_e is 1 when both are uniform, and larger as the router favours experts that
it also loads. HF's Mixtral pools the layers and the batch before the product (and counts
k× f); here each layer and sequence is a term, so the weight is Switch's α (0.01).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Param, Real, Term
from .routing import EXPERTS, routed, tile_rows

IMPLS = ("routed", "dense")


@dataclass(frozen=True, repr=False)
class MoE(Map):
    """x ↦ Σ_{e ∈ top-k} g_e(x) E_e(x).   R^{T×d} → R^{T×d}; W_R: [d, E]; experts SwiGLU."""

    d: int
    m: int
    E: int
    k: int
    renormalize: bool = True
    std: float = 0.02
    out_std: float | None = None
    impl: str = "routed"
    tile: int | None = None  # rows per tile of the routed form; None: from T·k / E
    balance_weight: float = 0.0  # the training objective's weights of the two
    z_weight: float = 0.0  # auxiliary losses (the "aux" point: train adds it)
    capacity: float = 0.0  # over an expert mesh axis: the capacity factor (0: drop none)
    # (W, x, g, S) ↦ (y, kept [T, k]): the routed product elsewhere (``parallel.experts``
    # sets it for a mesh); None: ``routing.routed`` here, which keeps every pair
    routing: Callable | None = None
    name: str = "moe"
    tokenwise = True  # each token's output reads that token alone: its cached form is itself
    reads = ("W_R", "W_gate", "W_in")

    def __post_init__(self):
        if not 1 <= self.k <= self.E:
            raise ValueError(f"{self.name}: top_k={self.k} must lie in 1..n_experts={self.E}")
        if self.impl not in IMPLS:
            raise ValueError(f"{self.name}: impl must be one of {IMPLS}, got {self.impl!r}")

    domain = property(lambda self: Real("T", self.d))
    codomain = property(lambda self: Real("T", self.d))

    def spec(self):
        E, d, m, out = self.E, self.d, self.m, self.out_std or self.std
        return {
            "W_R": Param((d, E), ("d", "e"), self.std),  # e: a score per expert, not an expert
            "W_gate": Param((E, d, m), ("E", "d", "m"), self.std),
            "W_in": Param((E, d, m), ("E", "d", "m"), self.std),
            "W_out": Param((E, m, d), ("E", "m", "d"), out),
        }

    # -- the router ----------------------------------------------------------------------
    def route(self, params, x_Td):
        """(router logits [T, E] (f32), gates [T, k], chosen experts [T, k] int32)."""
        logits = (x_Td @ params["W_R"].astype(x_Td.dtype)).astype(jnp.float32)
        p, chosen = jax.lax.top_k(jax.nn.softmax(logits, axis=-1), self.k)
        if self.renormalize:
            p = p / p.sum(-1, keepdims=True)
        return logits, p, chosen

    # -- the two evaluations -------------------------------------------------------------
    def apply(self, params, x_Td):
        return self.forward(params, x_Td)[0]

    def forward(self, params, x_Td):
        logits, gates, chosen = self.route(params, x_Td)
        experts = self._dense if self.impl == "dense" else self._routed
        y, kept = experts(params, x_Td, gates.astype(x_Td.dtype), chosen)
        T = x_Td.shape[0]
        load = jnp.zeros(self.E, jnp.float32).at[chosen.reshape(-1)].add(1.0) / (T * self.k)
        probs = jax.nn.softmax(logits, axis=-1).mean(0)
        balance = self.E * jnp.sum(load * probs)
        z = jnp.mean(jnp.square(jax.nn.logsumexp(logits, axis=-1)))
        points = {
            self.name: y,
            f"{self.name}.router": logits,
            f"{self.name}.gates": gates,
            f"{self.name}.experts": chosen,
            f"{self.name}.load": load,
            f"{self.name}.dropped": jnp.mean((~kept).astype(jnp.float32)),
            f"{self.name}.balance": balance,
            f"{self.name}.z": z,
            f"{self.name}.aux": self.balance_weight * balance + self.z_weight * z,
        }
        return y, points

    def _dense(self, params, x_Td, gates, chosen):
        """Every expert on every token: y_t = Σ_e G_te E_e(x_t), G zero off the top k
        (and every pair kept)."""
        dt = x_Td.dtype
        w = lambda n: params[n].astype(dt)
        h = jax.nn.silu(jnp.einsum("td,edm->tem", x_Td, w("W_gate")))
        h = h * jnp.einsum("td,edm->tem", x_Td, w("W_in"))
        y_TEd = jnp.einsum("tem,emd->ted", h, w("W_out"))
        G = jnp.zeros((x_Td.shape[0], self.E), dt)
        G = G.at[jnp.arange(x_Td.shape[0])[:, None], chosen].add(gates)
        return jnp.einsum("te,ted->td", G, y_TEd), jnp.ones(chosen.shape, bool)

    def _routed(self, params, x_Td, gates, chosen):
        """Only the chosen experts, in tiles of one expert each (``routing.py``); a batch
        under ``vmap`` is routed as one set of B·T tokens. (y, which pairs were kept)."""
        W = {n: params[n] for n in EXPERTS}
        if self.routing is not None:
            return self.routing(W, x_Td, gates, chosen)
        return routed(self.E, self.tile_rows)(W, x_Td, gates, chosen), jnp.ones(chosen.shape, bool)

    def tile_rows(self, T: int) -> int:
        """b: the rows of a tile of the routed form for T tokens (``routing.tile_rows``)."""
        return self.tile if self.tile is not None else tile_rows(T * self.k, self.E)

    # -- faces -----------------------------------------------------------------------------
    def trace_points(self):
        n = self.name
        extra = ("router", "gates", "experts", "load", "dropped", "balance", "z", "aux")
        return (n, *(f"{n}.{e}" for e in extra))

    def active_params(self) -> int:
        """The parameters one token uses: the router and k of the E experts."""
        return self.d * self.E + self.k * 3 * self.d * self.m

    def term(self, T, x):
        d, m, E, k = self.d, self.m, self.E, self.k
        norm = "g = p_S / Σ p_S" if self.renormalize else "g = p_S"
        text = (
            f"{x}_t ↦ Σ_(e ∈ S_t) g_te E_e({x}_t),  S_t = top-{k} of p_t = softmax({x}_t W_R)"
            f" over E = {E} experts,  {norm}",
            "E_e(u) = (silu(u W_gate^e) ⊙ u W_in^e) W_out^e",
        )
        tex = (
            rf"{x}_t \mapsto \sum_{{e \in S_t}} g_{{te}} E_e({x}_t),\ "
            rf"S_t = \mathrm{{top}}_{{{k}}}(p_t),\ p_t = \mathrm{{softmax}}({x}_t W_R)",
            r"E_e(u) = (\mathrm{silu}(u W^e_{\mathrm{gate}}) \odot u W^e_{\mathrm{in}})"
            r" W^e_{\mathrm{out}}",
        )
        expert = 6 * d * m + 5 * m  # as SwiGLU's
        router = 2 * d * E + 4 * E  # x W_R and its softmax
        if self.impl == "dense":
            flops = router + E * expert + 2 * E * d  # every expert, then Σ_e G_te y_te
        else:  # the rows of every tile computed (its padding included), per token
            b = self.tile_rows(T)
            rows = b * (-(-T * k // b) + min(E, T * k))
            flops = router + math.ceil(rows * expert / T) + 2 * k * d
        return Term(text, tex, flops)
