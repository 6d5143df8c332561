"""Combinators: new maps from old, checked when they are built.

    compose(g, f)      g ∘ f                       X → Y → Z, needs cod f = dom g
    residual(f)        id + f                      X → X, needs dom f = cod f
    parallel(f, g, …)  x ↦ f(x) + g(x) + …         a sum of maps with one domain/codomain
    tokenwise(f)       (x_t)_t ↦ (f(x_t))_t        lifts f: R^d → R^e to R^{T×d} → R^{T×e}
    repeat(f, L)       f ∘ … ∘ f (L times)          params stacked on a leading L axis, lax.scan
    pattern(fs, κ)     f_κ(L-1) ∘ … ∘ f_κ(0)        kinds of one parameter shape, stacked the same

The wrappers (tokenwise, scope, tie) are in ``wrappers.py``. Each combinator is itself
a ``Map`` with every face (term, cached form): composites compose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import jax
import jax.numpy as jnp

from .map import Map, Param, Params, Trace, is_param
from .spaces import ShapeError
from .term import Term, per_token
from .wrappers import Scope


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

    @property
    def inline(self) -> bool:
        """An unnamed composite (``attn∘ln1``): describe shows its maps in its place."""
        return self.name == "∘".join(m.name for m in self.maps)

    def label(self):
        if not self.inline:
            return super().label()
        parts = [m.label() for m in self.maps]
        return (
            "(" + " ∘ ".join(t for t, _ in parts) + ")",
            "(" + r" \circ ".join(t for _, t in parts) + ")",
        )

    def term(self, T, x):
        parts = [m.label() for m in self.maps]
        return Term((" ∘ ".join(t for t, _ in parts),), (r" \circ ".join(t for _, t in parts),))

    def cache_spec(self, S):
        return {k: v for m in self.maps for k, v in m.cache_in(S).items()}

    def decode(self, params, cache, x, positions, layer=()):
        out = {}
        for m in reversed(self.maps):
            x, c = m.decode_in(params, cache, x, positions, layer)
            out |= c
        return x, out


def compose(*maps: Map, name: str | None = None) -> Compose:
    """``compose(g, f)`` is g ∘ f (f first). Raises ``ShapeError`` at once if
    ``codomain(f) ≠ domain(g)``, naming both maps and both spaces."""
    return Compose(tuple(maps), name or "∘".join(m.name for m in maps))


class _Endo(Map):
    """A combinator of one map f: X → X (residual, repeat), on f's space."""

    f: Map

    def _check_endo(self, what: str) -> None:
        if not self.f.domain.same_as(self.f.codomain):
            raise ShapeError(
                f"{what}({self.f.name}) needs domain = codomain, got "
                f"{self.f.domain} → {self.f.codomain}"
            )

    domain = property(lambda self: self.f.domain)
    codomain = property(lambda self: self.f.codomain)

    def children(self):
        return (self.f,)

    def with_children(self, children):
        return dataclasses.replace(self, f=children[0])


@dataclass(frozen=True, repr=False)
class Residual(_Endo):
    """id + f : X → X. The point it produces is the residual stream after f writes."""

    f: Map
    name: str = "residual"
    namespace: ClassVar[bool] = False

    def __post_init__(self):
        self._check_endo("residual")

    def spec(self):
        return self.f.spec_in()

    def apply(self, params, x):
        return x + self.f(self.f.own(params), x)

    def forward(self, params, x):
        w, points = self.f.trace(self.f.own(params), x)
        y = x + w
        return y, {**points, self.name: y}

    def term(self, T, x):
        f, tf = self.f.label()
        text, tex = f"{x} ↦ {x} + {f}({x})", rf"{x} \mapsto {x} + {tf}({x})"
        return Term((text,), (tex,), per_token(self.codomain))

    def cache_spec(self, S):
        return self.f.cache_in(S)

    def decode(self, params, cache, x, positions, layer=()):
        y, c = self.f.decode_in(params, cache, x, positions, layer)
        return x + y, c


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

    def term(self, T, x):
        parts = [m.label() for m in self.maps]
        return Term(
            (f"{x} ↦ " + " + ".join(f"{t}({x})" for t, _ in parts),),
            (rf"{x} \mapsto " + " + ".join(f"{t}({x})" for _, t in parts),),
            (len(self.maps) - 1) * per_token(self.codomain),
        )

    def cache_spec(self, S):
        return {k: v for m in self.maps for k, v in m.cache_in(S).items()}

    def decode(self, params, cache, x, positions, layer=()):
        ys, out = [], {}
        for m in self.maps:
            y, c = m.decode_in(params, cache, x, positions, layer)
            ys.append(y)
            out |= c
        return sum(ys), out


def parallel(*maps: Map, name: str | None = None) -> Parallel:
    return Parallel(tuple(maps), name or "+".join(m.name for m in maps))


@dataclass(frozen=True, repr=False)
class Repeat(_Endo):
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
        self._check_endo("repeat")

    def spec(self):
        stack = lambda p: Param((self.L, *p.shape), ("L", *p.axes), p.std, p.fill)
        return jax.tree.map(stack, self.f.spec_in(), is_leaf=is_param)

    def _block(self, traced: bool, f: Map | None = None) -> Callable:
        f = f or self.f

        def block(x, p):
            if traced:
                return f.trace(f.own(p), x)
            return f(f.own(p), x), None

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

    def term(self, T, x):
        (f, tf), L = self.f.label(), self.L
        return Term(
            (f"{f} ∘ ⋯ ∘ {f}  ({L} copies, parameters stacked on a leading axis of {L})",),
            (rf"{tf}^{{\circ {self.L}}}",),
        )

    def cache_spec(self, S):
        return _stack_cache(self.f.cache_in(S), self.L)

    def decode(self, params, cache, x, positions, layer=()):
        """The layers over the stacked cache: attention writes its new rows in place, since a
        scan that emitted each layer's updated slice would copy the whole cache every step.
        Params split by ``unstack`` (a tuple of L trees) run as straight-line code."""
        if isinstance(params, tuple):
            for l, p in enumerate(params):
                x, cache = self.f.decode_in(p, cache, x, positions, (*layer, l))
            return x, cache

        def one(x_c, p_l):
            p, l = p_l
            return self.f.decode_in(p, x_c[1], x_c[0], positions, (*layer, l)), None

        return jax.lax.scan(one, (x, cache), (params, jnp.arange(self.L)))[0]


def _is_shape(x) -> bool:
    """A cache leaf's shape: a tuple of ints (the cache's dtype), or a ShapeDtypeStruct."""
    shape = isinstance(x, tuple) and all(isinstance(n, int) for n in x)
    return shape or isinstance(x, jax.ShapeDtypeStruct)


def _stack_cache(spec: dict, L: int) -> dict:
    def stack(s):
        if isinstance(s, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct((L, *s.shape), s.dtype)
        return (L, *s)

    return jax.tree.map(stack, spec, is_leaf=_is_shape)


@dataclass(frozen=True, repr=False)
class Pattern(Repeat):
    """f_{κ(L-1)} ∘ … ∘ f_{κ(0)}: L layers, layer l of kind κ(l) ∈ ``kinds`` (Gemma's local
    and global layers). The kinds share one parameter shape, so the params are stacked on
    a leading L axis exactly as a ``Repeat``'s (``f`` is the first kind); the scan picks
    each layer's kind with ``lax.switch``. The cache is filed per kind, each stacked over
    its own layers (``{"local": …, "global": …}`` under ``labels``), so the kinds' caches
    may differ in shape (a ring of the window beside a full one).
    """

    kinds: tuple[Map, ...] = ()
    kind: tuple[int, ...] = ()  # κ(l) for l = 0..L-1
    labels: tuple[str, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        if len(self.kind) != self.L or not set(self.kind) <= set(range(len(self.kinds))):
            raise ValueError(
                f"pattern: kind={self.kind} must give each of the {self.L} layers one of "
                f"the {len(self.kinds)} kinds"
            )
        if len(self.labels) != len(self.kinds) or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"pattern: labels={self.labels} must name each kind once")
        shape = lambda m: jax.tree.map(lambda p: (p.shape, p.axes), m.spec_in(), is_leaf=is_param)
        for m in self.kinds:
            spaces = m.domain.same_as(self.f.domain) and m.codomain.same_as(self.f.codomain)
            if shape(m) != shape(self.f) or not spaces:
                raise ShapeError(
                    f"pattern: the kinds {self.f.name} and {m.name} must share their spaces and "
                    "parameter shapes (their params are stacked on one L axis)"
                )

    def children(self):
        return self.kinds

    def with_children(self, children):
        kinds = tuple(children)
        return dataclasses.replace(self, f=kinds[0], kinds=kinds)

    def count(self, i: int) -> int:
        """How many layers are of kind i."""
        return self.kind.count(i)

    def _block(self, traced: bool, f: Map | None = None) -> Callable:
        branches = [Repeat._block(self, traced, m) for m in self.kinds]

        def block(x, p_kind):
            p, kind = p_kind
            return jax.lax.switch(kind, branches, x, p)

        return block

    def apply(self, params, x):
        xs = (params, jnp.asarray(self.kind))
        return jax.lax.scan(self._block(False), x, xs, unroll=self.unrolled)[0]

    def forward(self, params, x):
        xs = (params, jnp.asarray(self.kind))
        y, points = jax.lax.scan(self._block(True), x, xs, unroll=self.unrolled)
        return y, {self.name: points}

    def unroll(self) -> Compose:
        return Compose(
            tuple(
                Scope(self.kinds[self.kind[i]], f"{self.name}_{i}") for i in reversed(range(self.L))
            ),
            f"{self.name}_unrolled",
        )

    def term(self, T, x):
        kinds = ", ".join(f"{n}: {self.count(i)}" for i, n in enumerate(self.labels))
        order = "".join(self.labels[i][0] for i in self.kind)
        return Term(
            (f"the {self.L} layers in the order {order}  ({kinds}; parameters stacked on L)",),
            (rf"\mathrm{{{order}}}",),
        )

    def cache_spec(self, S):
        return {
            n: _stack_cache(m.cache_in(S), self.count(i))
            for i, (n, m) in enumerate(zip(self.labels, self.kinds, strict=True))
            if self.count(i)
        }

    def _index(self) -> list[int]:
        """Layer l's place among the layers of its kind."""
        return [self.kind[:l].count(k) for l, k in enumerate(self.kind)]

    def decode(self, params, cache, x, positions, layer=()):
        idx = self._index()

        def one(i):
            n, m = self.labels[i], self.kinds[i]

            def run(x, cache, p, j):
                y, c = m.decode_in(p, cache[n], x, positions, (*layer, j))
                return y, {**cache, n: c}

            return run

        if isinstance(params, tuple):
            for l, p in enumerate(params):
                x, cache = one(self.kind[l])(x, cache, p, idx[l])
            return x, cache
        present = [i for i in range(len(self.kinds)) if self.count(i)]  # the cached kinds
        branches = [one(i) for i in present]

        def scan_one(x_c, p_l):
            p, kind, j = p_l
            return jax.lax.switch(kind, branches, x_c[0], x_c[1], p, j), None

        xs = (params, jnp.asarray([present.index(k) for k in self.kind]), jnp.asarray(idx))
        return jax.lax.scan(scan_one, (x, cache), xs)[0]


def pattern(kinds, kind, labels, name: str = "blocks", remat=None, unrolled: bool = False):
    """Layer l is ``kinds[kind[l]]``; ``labels`` name the kinds (their caches' keys)."""
    kinds = tuple(kinds)
    return Pattern(kinds[0], len(kind), name, remat, unrolled, kinds, tuple(kind), tuple(labels))


def repeat(f: Map, L: int, name: str = "blocks", remat=None, unrolled: bool = False) -> Repeat:
    return Repeat(f, L, name, remat, unrolled)
