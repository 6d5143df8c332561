"""Stacks: L layers of one parameter shape, params stacked on a leading L axis.

repeat(f, L)       f ∘ … ∘ f (L times)          lax.scan over the stacked params
pattern(fs, κ)     f_κ(L-1) ∘ … ∘ f_κ(0)        kinds of one parameter shape, stacked the same
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp

from .combinators import Compose, _Endo
from .map import Map, Param, Params, is_param
from .spaces import ShapeError
from .term import Term
from .wrappers import Scope


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
