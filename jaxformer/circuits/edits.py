"""Edits: maps S → S of a point's space, to ``splice`` into a model at that point.

    steer(S)              v ↦ v + c                    c: a vector per token slot, "c"
    ablate(S, "zero")     v ↦ 0
    ablate(S, "mean")     v ↦ μ                        μ: the point's mean, "mean"
    ablate(S, "resample", T)  v ↦ v'                   v': the point on another input, "value"
    ablate_head(S, h)     z ↦ z with head h's result zeroed (or its mean, how="mean")
    reconstruct(g)        v ↦ g(v)                     an SAE's reconstruction
    reconstruct(g, error=True)  v ↦ g(v) + sg(v − g(v))  the same value as v; gradients
                                                       flow through g (sg: stop-gradient)

S is the point's space (``space_at(model, point)``): ℝ^{T×d} for a stream point,
ℝ^{H×T×k} for attention's head results ``"attn.z"``. A stored vector has S's shape with
the token axis T of length 1, so it is the same at every position.

    m = splice(model, "blocks.1.resid_mid", steer(space_at(model, "blocks.1.resid_mid")))
    logits = m(with_splice(params, "blocks.1.resid_mid", {"c": c_d}), tokens)
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Param, Space, Wrapper

HOW = ("zero", "mean", "resample")


def _token_axis(S: Space) -> int:
    if "T" not in S.shape:
        raise ValueError(f"edits act on a point with a token axis T; {S} has none")
    return S.shape.index("T")


def _vector(S: Space) -> tuple[int, ...]:
    """S's shape with T of length 1 (a stored vector, the same at every position)."""
    return tuple(1 if a == "T" else a for a in S.shape)


@dataclass(frozen=True, repr=False)
class _Edit(Map):
    space: Space
    name: str = "edit"
    tokenwise = True  # each position alone: its cached form is itself

    def __post_init__(self):
        _token_axis(self.space)
        if any(isinstance(a, str) and a != "T" for a in self.space.shape):
            raise ValueError(f"edits need a point of fixed sizes but T; got {self.space}")

    domain = property(lambda self: self.space)
    codomain = property(lambda self: self.space)


@dataclass(frozen=True, repr=False)
class Steer(_Edit):
    """v ↦ v + c: a steering vector added at every position."""

    name: str = "steer"

    def spec(self):
        return {"c": Param(_vector(self.space), tuple("·" * len(self.space.shape)))}

    def apply(self, params, v):
        return v + params["c"].astype(v.dtype)


@dataclass(frozen=True, repr=False)
class Ablate(_Edit):
    """v ↦ 0, v ↦ μ (the point's mean) or v ↦ v' (the point on another input, of length T)."""

    how: str = "zero"
    T: int | None = None
    name: str = "ablate"

    def __post_init__(self):
        super().__post_init__()
        if self.how not in HOW:
            raise ValueError(f"ablate: how must be one of {HOW}, got {self.how!r}")
        if (self.how == "resample") != (self.T is not None):
            raise ValueError("ablate: a resample ablation, and it alone, needs T (the length)")

    tokenwise = property(lambda self: self.how != "resample")

    def spec(self):
        axes = tuple("·" * len(self.space.shape))
        if self.how == "mean":
            return {"mean": Param(_vector(self.space), axes)}
        if self.how == "resample":
            shape = tuple(self.T if a == "T" else a for a in self.space.shape)
            return {"value": Param(shape, axes)}
        return {}

    def apply(self, params, v):
        if self.how == "zero":
            return jnp.zeros_like(v)
        stored = params["mean" if self.how == "mean" else "value"].astype(v.dtype)
        return jnp.broadcast_to(stored, v.shape)


@dataclass(frozen=True, repr=False)
class AblateHead(_Edit):
    """z ↦ z with head h's result replaced by 0 (or its mean ``"mean"``, [H, 1, k])."""

    h: int = 0
    how: str = "zero"
    name: str = "ablate_head"

    def __post_init__(self):
        super().__post_init__()
        if self.space.shape.index("T") != 1 or not 0 <= self.h < self.space.shape[0]:
            raise ValueError(
                f"ablate_head: needs attention's head results ℝ^{{H×T×k}} and 0 ≤ h < H; "
                f"got {self.space} and h={self.h}"
            )
        if self.how not in ("zero", "mean"):
            raise ValueError(f"ablate_head: how must be 'zero' or 'mean', got {self.how!r}")

    def spec(self):
        return {"mean": Param(_vector(self.space), ("H", "·", "k"))} if self.how == "mean" else {}

    def apply(self, params, z):
        keep = (jnp.arange(z.shape[0]) != self.h)[:, None, None]
        other = params["mean"].astype(z.dtype) if self.how == "mean" else 0
        return jnp.where(keep, z, other)


@dataclass(frozen=True, repr=False)
class Reconstruct(Wrapper):
    """v ↦ g(v), or with ``error`` v ↦ g(v) + sg(v − g(v)): the value of v itself, whose
    gradient reaches v through g alone (attribution to an SAE's latents). It stands in
    for g (its name and params)."""

    error: bool = False

    def __post_init__(self):
        if not self.f.domain.same_as(self.f.codomain):
            raise ValueError(f"reconstruct: {self.f.name} must map a space into itself")

    def apply(self, params, v):
        return self.forward(params, v)[0]

    def forward(self, params, v):
        r, points = self.f.trace(self.inner(params), v)
        if self.error:
            r = r + jax.lax.stop_gradient(v - r)
        return r, points

    decode = Map.decode  # a token map's cached form is itself


def steer(S: Space) -> Steer:
    return Steer(S)


def ablate(S: Space, how: str = "zero", T: int | None = None) -> Ablate:
    return Ablate(S, how=how, T=T)


def ablate_head(S: Space, h: int, how: str = "zero") -> AblateHead:
    return AblateHead(S, h=h, how=how)


def reconstruct(g: Map, error: bool = False) -> Reconstruct:
    return Reconstruct(g, error)
