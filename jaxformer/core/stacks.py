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
        spec, shared = self._split(self.f.spec_in())
        for m in self.children():  # a pattern's kinds may each share their own
            shared |= self._split(m.spec_in())[1]
        return jax.tree.map(stack, spec, is_leaf=is_param) | shared

    def _split(self, params: Params) -> tuple[Params, Params]:
        """(the per-layer params, stacked on L; those filed once for every layer)."""
        shared = self.f.shared() | frozenset().union(*(m.shared() for m in self.children()))
        return (
            {k: v for k, v in params.items() if k not in shared},
            {k: v for k, v in params.items() if k in shared},
        )

    def _scan(self, block, x, params, xs=()):
        """``lax.scan`` of ``block(x, layer's params, *xs_l)`` over the layers; the shared
        params reach every layer through the closure."""
        stacked, shared = self._split(params)
        step = lambda x, p: block(x, p[0] | shared, *p[1:])
        return jax.lax.scan(step, x, (stacked, *xs), unroll=self.unrolled)

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
        return self._scan(self._block(False), x, params)[0]

    def forward(self, params, x):
        """Points are stacked over layers: ``points[name][k]`` has a leading L axis."""
        y, points = self._scan(self._block(True), x, params)
        return y, {self.name: points}

    def points(self):
        return [f"{self.name}.{l}.{n}" for l in range(self.L) for n in self._layer(l).points()]

    def _layer(self, l: int) -> Map:
        return self.f

    def _selector(self, keys: frozenset[str]) -> Callable:
        """A layer's selective trace ``(x, params, l) → (y, {key: point})``."""
        return lambda x, p, l: self.f.select(self.f.own(p), x, keys, False)

    def select(self, params, x, want, stop):
        """The layers up to the last wanted one (all of them without ``stop``), scanned:
        a point wanted at every scanned layer is stacked by the scan, one wanted at some
        layers is written into a buffer of those layers alone (the carry), so no other
        layer's internals are kept. With ``stop`` the last wanted layer runs alone, and
        stops where its last point is."""
        cut = len(self.name) + 1
        at: dict[str, list[int]] = {}
        for n in want:
            l, key = n[cut:].split(".", 1)
            at.setdefault(key, []).append(int(l))
        top = max(l for ls in at.values() for l in ls)
        upto = top if stop else self.L  # the scanned layers: 0 … upto-1
        got: dict = {}
        if upto:
            got, x = self._select_scan(params, x, at, upto)
        if stop:
            stacked, shared = self._split(params)
            p = jax.tree.map(lambda a: a[top], stacked) | shared
            f = self._layer(top)
            x, last = f.select(f.own(p), x, frozenset(k for k, ls in at.items() if top in ls), True)
            got |= {f"{self.name}.{top}.{k}": v for k, v in last.items()}
        return x, got

    def _select_scan(self, params, x, at: dict[str, list[int]], upto: int):
        keys = frozenset(k for k, ls in at.items() if min(ls) < upto)
        every = {k for k in keys if set(range(upto)) <= set(at[k])}
        some = {k: sorted(l for l in at[k] if l < upto) for k in keys - every}
        trace = self._selector(keys)
        stacked, shared = self._split(params)
        # layer l's params are sliced inside the loop: slicing the stack to the scanned
        # layers first would copy them
        at = lambda a, l: jax.lax.dynamic_index_in_dim(a, l, keepdims=False)  # numpy too
        layer = lambda l: jax.tree.map(lambda a: at(a, l), stacked) | shared
        shape = jax.eval_shape(trace, x, layer(0), 0)[1]
        bufs = {k: jnp.zeros((len(ls), *shape[k].shape), shape[k].dtype) for k, ls in some.items()}
        # slot[k][l]: where layer l's point k goes in its buffer (-1: not kept)
        index = lambda ls: jnp.asarray([ls.index(l) if l in ls else -1 for l in range(upto)])
        slot = {k: index(ls) for k, ls in some.items()}

        def block(carry, l):
            x, bufs = carry
            y, points = trace(x, layer(l), l)
            for k, b in bufs.items():
                i = jnp.maximum(slot[k][l], 0)
                kept = jnp.where(slot[k][l] >= 0, points[k], b[i])
                bufs = bufs | {k: jax.lax.dynamic_update_index_in_dim(b, kept, i, 0)}
            return (y, bufs), {k: points[k] for k in every}

        (x, bufs), ys = jax.lax.scan(block, (x, bufs), jnp.arange(upto), unroll=self.unrolled)
        name = lambda l, k: f"{self.name}.{l}.{k}"
        got = {name(l, k): ys[k][l] for k in every for l in range(upto)}
        got |= {name(l, k): bufs[k][i] for k, ls in some.items() for i, l in enumerate(ls)}
        return got, x

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

        def one(x_c, p, l):
            return self.f.decode_in(p, x_c[1], x_c[0], positions, (*layer, l)), None

        return self._scan(one, (x, cache), params, (jnp.arange(self.L),))[0]


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
        shape = lambda m: jax.tree.map(
            lambda p: (p.shape, p.axes), self._split(m.spec_in())[0], is_leaf=is_param
        )
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
        if traced:
            return lambda x, p, kind: _switch(kind, branches, x, p)
        return lambda x, p, kind: jax.lax.switch(kind, branches, x, p)

    def apply(self, params, x):
        return self._scan(self._block(False), x, params, (jnp.asarray(self.kind),))[0]

    def forward(self, params, x):
        y, points = self._scan(self._block(True), x, params, (jnp.asarray(self.kind),))
        return y, {self.name: points}

    def _layer(self, l):
        return self.kinds[self.kind[l]]

    def _selector(self, keys):
        branches = [lambda x, p, m=m: m.select(m.own(p), x, keys, False) for m in self.kinds]
        kind = jnp.asarray(self.kind)
        return lambda x, p, l: _switch(kind[l], branches, x, p)

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

        def scan_one(x_c, p, kind, j):
            return jax.lax.switch(kind, branches, x_c[0], x_c[1], p, j), None

        xs = (jnp.asarray([present.index(k) for k in self.kind]), jnp.asarray(idx))
        return self._scan(scan_one, (x, cache), params, xs)[0]


def _switch(i, branches, x, p):
    """``lax.switch`` of traced blocks whose points differ (a spliced layer's kind records
    its splice's points too): each branch gives every kind's points, zeros where it has none.
    """
    shapes = {}
    for b in branches:
        shapes |= jax.eval_shape(b, x, p)[1]

    def padded(b):
        def run(x, p):
            y, points = b(x, p)
            return y, {k: points.get(k, jnp.zeros(s.shape, s.dtype)) for k, s in shapes.items()}

        return run

    return jax.lax.switch(i, [padded(b) for b in branches], x, p)


def pattern(kinds, kind, labels, name: str = "blocks", remat=None, unrolled: bool = False):
    """Layer l is ``kinds[kind[l]]``; ``labels`` name the kinds (their caches' keys)."""
    kinds = tuple(kinds)
    return Pattern(kinds[0], len(kind), name, remat, unrolled, kinds, tuple(kind), tuple(labels))


def repeat(f: Map, L: int, name: str = "blocks", remat=None, unrolled: bool = False) -> Repeat:
    return Repeat(f, L, name, remat, unrolled)
