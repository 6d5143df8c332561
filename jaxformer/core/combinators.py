"""Combinators: new maps from old, checked when they are built.

    compose(g, f)      g ∘ f                       X → Y → Z, needs cod f = dom g
    residual(f)        id + f                      X → X, needs dom f = cod f
    parallel(f, g, …)  x ↦ f(x) + g(x) + …         a sum of maps with one domain/codomain
    tokenwise(f)       (x_t)_t ↦ (f(x_t))_t        lifts f: R^d → R^e to R^{T×d} → R^{T×e}
    repeat(f, L)       f ∘ … ∘ f (L times)          params stacked on a leading L axis, lax.scan
    scope(f, name)     f, with its params filed under ``name``
    tie(f, dst, src)   f with one parameter defined as a function of another

Each is itself a ``Map``: composites compose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import jax
import jax.numpy as jnp

from .map import Map, Param, Params, Trace, is_param
from .spaces import ShapeError, Space


def _unique(maps: tuple[Map, ...], where: str) -> None:
    seen: dict[str, int] = {}
    for m in maps:
        for n in m.namespaces():
            seen[n] = seen.get(n, 0) + 1
    dup = sorted(n for n, c in seen.items() if c > 1)
    if dup:
        raise ValueError(
            f"{where}: the name(s) {dup} appear more than once, so their parameters would "
            "collide; give each map its own name with .named(...)"
        )


@dataclass(frozen=True, repr=False)
class Compose(Map):
    """g_n ∘ … ∘ g_1: applies ``maps`` right to left, as written in math."""

    maps: tuple[Map, ...]
    name: str = "compose"
    namespace: ClassVar[bool] = False

    def __post_init__(self):
        if not self.maps:
            raise ValueError("compose needs at least one map")
        # maps[-1] is applied first: check each codomain against the next domain.
        for g, f in zip(self.maps[:-1], self.maps[1:]):
            if not f.codomain.same_as(g.domain):
                raise ShapeError(
                    f"cannot compose {g.name} ∘ {f.name}: the codomain of {f.name!r} is "
                    f"{f.codomain} but the domain of {g.name!r} is {g.domain}"
                )
        _unique(self.maps, f"compose({', '.join(m.name for m in self.maps)})")

    domain = property(lambda self: self.maps[-1].domain)
    codomain = property(lambda self: self.maps[0].codomain)

    def children(self):
        return self.maps

    def with_children(self, children):
        return Compose(tuple(children), self.name)

    def spec(self):
        return {k: v for m in reversed(self.maps) for k, v in m.spec_in().items()}

    def apply(self, params, x):
        for m in reversed(self.maps):
            x = m(m.own(params), x)
        return x

    def forward(self, params, x):
        points: Trace = {}
        for m in reversed(self.maps):
            x, p = m.trace(m.own(params), x)
            points.update(p)
        return x, points


def compose(*maps: Map, name: str | None = None) -> Compose:
    """``compose(g, f)`` is g ∘ f (f first). Raises ``ShapeError`` at once if
    ``codomain(f) ≠ domain(g)``, naming both maps and both spaces."""
    return Compose(tuple(maps), name or "∘".join(m.name for m in maps))


@dataclass(frozen=True, repr=False)
class Residual(Map):
    """id + f : X → X. The point it produces is the residual stream after f writes."""

    f: Map
    name: str = "residual"
    namespace: ClassVar[bool] = False

    def __post_init__(self):
        if not self.f.domain.same_as(self.f.codomain):
            raise ShapeError(
                f"residual({self.f.name}) needs domain = codomain, got "
                f"{self.f.domain} → {self.f.codomain}"
            )

    domain = property(lambda self: self.f.domain)
    codomain = property(lambda self: self.f.codomain)

    def children(self):
        return (self.f,)

    def with_children(self, children):
        return Residual(children[0], self.name)

    def spec(self):
        return self.f.spec_in()

    def apply(self, params, x):
        return x + self.f(self.f.own(params), x)

    def forward(self, params, x):
        w, points = self.f.trace(self.f.own(params), x)
        y = x + w
        return y, {**points, self.name: y}


def residual(f: Map, name: str | None = None) -> Residual:
    """id + f; the trace records f's write under f's name and the sum under ``name``."""
    return Residual(f, name or f"resid_{f.name}")


@dataclass(frozen=True, repr=False)
class Parallel(Map):
    """x ↦ Σ_i f_i(x): a sum of maps that share a domain and a codomain."""

    maps: tuple[Map, ...]
    name: str = "parallel"
    namespace: ClassVar[bool] = False

    def __post_init__(self):
        first = self.maps[0]
        for m in self.maps[1:]:
            if not (m.domain.same_as(first.domain) and m.codomain.same_as(first.codomain)):
                raise ShapeError(
                    f"parallel: {m.name} is {m.domain} → {m.codomain} but {first.name} is "
                    f"{first.domain} → {first.codomain}; summands must share both spaces"
                )
        _unique(self.maps, "parallel")

    domain = property(lambda self: self.maps[0].domain)
    codomain = property(lambda self: self.maps[0].codomain)

    def children(self):
        return self.maps

    def with_children(self, children):
        return Parallel(tuple(children), self.name)

    def spec(self):
        return {k: v for m in self.maps for k, v in m.spec_in().items()}

    def apply(self, params, x):
        return sum(m(m.own(params), x) for m in self.maps)

    def forward(self, params, x):
        ys, points = [], {}
        for m in self.maps:
            y, p = m.trace(m.own(params), x)
            ys.append(y)
            points.update(p)
        y = sum(ys)
        return y, {**points, self.name: y}


def parallel(*maps: Map, name: str | None = None) -> Parallel:
    return Parallel(tuple(maps), name or "+".join(m.name for m in maps))


@dataclass(frozen=True, repr=False)
class Tokenwise(Map):
    """Lift f: R^{d} → R^{e} to R^{T×d} → R^{T×e}, (x_t)_t ↦ (f(x_t))_t, by ``vmap``."""

    f: Map
    axis: str = "T"
    namespace: ClassVar[bool] = False

    name = property(lambda self: self.f.name)
    domain = property(lambda self: _lift(self.f.domain, self.axis))
    codomain = property(lambda self: _lift(self.f.codomain, self.axis))

    def children(self):
        return (self.f,)

    def with_children(self, children):
        return Tokenwise(children[0], self.axis)

    def named(self, name):
        return Tokenwise(self.f.named(name), self.axis)

    def spec(self):
        return self.f.spec_in()

    def apply(self, params, x):
        return jax.vmap(lambda x_t: self.f(self.f.own(params), x_t))(x)

    def forward(self, params, x):
        return jax.vmap(lambda x_t: self.f.trace(self.f.own(params), x_t))(x)


def _lift(s: Space, axis: str) -> Space:
    return Space((axis, *s.shape), s.kind, s.n, s.limits)


def tokenwise(f: Map, axis: str = "T") -> Tokenwise:
    return Tokenwise(f, axis)


@dataclass(frozen=True, repr=False)
class Scope(Map):
    """f with its parameters filed under ``name`` (a namespace boundary)."""

    f: Map
    name: str

    domain = property(lambda self: self.f.domain)
    codomain = property(lambda self: self.f.codomain)

    def children(self):
        return (self.f,)

    def with_children(self, children):
        return Scope(children[0], self.name)

    def spec(self):
        return self.f.spec_in()

    def apply(self, params, x):
        return self.f(self.f.own(params), x)

    def forward(self, params, x):
        y, points = self.f.trace(self.f.own(params), x)
        return y, {self.name: points}


def scope(f: Map, name: str) -> Scope:
    return Scope(f, name)


@dataclass(frozen=True, repr=False)
class Repeat(Map):
    """f^L = f ∘ … ∘ f with L independent parameter sets stacked on a leading axis.

    Applied with ``lax.scan``, so compile time does not grow with L. ``remat``
    (a ``jax.checkpoint`` policy, or ``True`` for "save nothing") recomputes the
    block's activations in the backward pass instead of storing them.
    ``unrolled=True`` keeps the scan but unrolls it into straight-line code: compile
    time grows with L, and in exchange XLA no longer copies every saved activation
    into an [L, …] stack for the backward pass (about 10% of a CPU training step).
    ``unroll()`` gives the same function as an explicit composite, for inspection.
    """

    f: Map
    L: int
    name: str = "blocks"
    remat: object = field(default=None, compare=False)
    unrolled: bool = field(default=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.L, int) or self.L < 1:
            raise ValueError(f"repeat needs L >= 1 copies, got {self.L!r}")
        if not self.f.domain.same_as(self.f.codomain):
            raise ShapeError(
                f"repeat({self.f.name}) needs domain = codomain, got "
                f"{self.f.domain} → {self.f.codomain}"
            )

    domain = property(lambda self: self.f.domain)
    codomain = property(lambda self: self.f.codomain)

    def children(self):
        return (self.f,)

    def with_children(self, children):
        return Repeat(children[0], self.L, self.name, self.remat, self.unrolled)

    def spec(self):
        stack = lambda p: Param((self.L, *p.shape), ("L", *p.axes), p.std, p.fill)
        return jax.tree.map(stack, self.f.spec_in(), is_leaf=is_param)

    def _block(self, traced: bool) -> Callable:
        def block(x, p):
            if traced:
                return self.f.trace(self.f.own(p), x)
            return self.f(self.f.own(p), x), None

        if self.remat is None or self.remat is False:
            return block
        policy = None if self.remat is True else self.remat
        return jax.checkpoint(block, policy=policy)

    def apply(self, params, x):
        return jax.lax.scan(self._block(False), x, params, unroll=self.unrolled)[0]

    def forward(self, params, x):
        """Points are stacked over layers: ``points[name][k]`` has a leading L axis."""
        y, points = jax.lax.scan(self._block(True), x, params, unroll=self.unrolled)
        return y, {self.name: points}

    def unroll(self) -> Compose:
        """f_{L-1} ∘ … ∘ f_0 as a composite whose params are ``unstack(params)``."""
        return Compose(
            tuple(Scope(self.f, f"{self.name}_{i}") for i in reversed(range(self.L))),
            f"{self.name}_unrolled",
        )

    def unstack(self, params: Params) -> Params:
        """Stacked params ``{..: [L, ...]}`` → ``{name_i: {..: [...]}}`` for ``unroll()``."""
        return {
            f"{self.name}_{i}": jax.tree.map(lambda a, i=i: a[i], params) for i in range(self.L)
        }


def repeat(f: Map, L: int, name: str = "blocks", remat=None, unrolled: bool = False) -> Repeat:
    return Repeat(f, L, name, remat, unrolled)


@dataclass(frozen=True, repr=False)
class Tie(Map):
    """f with the parameter at ``dst`` defined as ``fn(param at src)``.

    Weight tying as a reparametrisation: GPT-2's unembedding W_U = W_Eᵀ is
    ``tie(model, dst=("unembed", "W_U"), src=("embed", "W_E"), fn=jnp.transpose)``.
    The tied parameter is removed from the pytree; gradients reach ``src`` through both uses.
    """

    f: Map
    dst: tuple[str, ...]
    src: tuple[str, ...]
    fn: Callable = jnp.transpose
    namespace: ClassVar[bool] = False

    name = property(lambda self: self.f.name)
    domain = property(lambda self: self.f.domain)
    codomain = property(lambda self: self.f.codomain)

    def children(self):
        return (self.f,)

    def with_children(self, children):
        return Tie(children[0], self.dst, self.src, self.fn)

    def named(self, name):
        return Tie(self.f.named(name), self.dst, self.src, self.fn)

    def spec(self):
        spec = self.f.spec_in()
        _get(spec, self.src)  # fail at build time if the source is missing
        _get(spec, self.dst)
        return _set(spec, self.dst, None)

    def untie(self, params: Params) -> Params:
        """The inner map's full params, with ``dst`` filled in from ``src``."""
        return _set(params, self.dst, self.fn(_get(params, self.src)))

    def apply(self, params, x):
        return self.f(self.f.own(self.untie(params)), x)

    def forward(self, params, x):
        return self.f.trace(self.f.own(self.untie(params)), x)


def _get(tree: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(tree, dict) or k not in tree:
            raise KeyError(f"tie: no parameter at {'/'.join(path)}")
        tree = tree[k]
    return tree


def _set(tree: dict, path: tuple[str, ...], value) -> dict:
    """A copy of ``tree`` with ``path`` set to ``value`` (removed when value is None)."""
    head, *rest = path
    out = dict(tree)
    if rest:
        out[head] = _set(tree[head], tuple(rest), value)
    elif value is None:
        out.pop(head, None)
    else:
        out[head] = value
    return out


def tie(f: Map, dst: tuple[str, ...], src: tuple[str, ...], fn: Callable = jnp.transpose) -> Tie:
    return Tie(f, tuple(dst), tuple(src), fn)
