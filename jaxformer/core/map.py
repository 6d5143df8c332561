"""The map: a pure function between spaces, with its parameters in a pytree.

A ``Map`` f : X → Y knows its ``domain`` X, its ``codomain`` Y, how to make its
parameters (``spec()``, drawn by ``init(key) -> params``) and how to apply them (``f(params, x)``).
Calling a map checks ``x ∈ X`` and ``f(x) ∈ Y`` at trace time (chex), so a wrong
shape fails with the map's name and the axis, and costs nothing under ``jit``.

Parameters live in *namespaces*: a leaf map (a layer) owns the dict its
``init`` returns, filed under its ``name`` by the composite that holds it.
Combinators that only wire maps together (compose, residual, sum, tokenwise)
are *transparent*: they file their children's namespaces side by side, so a
model's params read ``params["blocks"]["attn"]["W_Q"]`` rather than following
the nesting of the combinators. ``Repeat`` and ``Scope`` open a new namespace.

``trace(params, x)`` returns ``(y, points)``: ``points`` maps each named map to
the point it produced (a leaf may add internals such as ``"attn.pattern"``),
the residual stream at every stage, with no hooks and no mutation.
``trace(params, x, points=["blocks.3.resid_mid"])`` keeps only the named points (flat
names, globs allowed: ``points()`` lists them) and computes nothing past the last one.

A map carries its own *faces*, what each capability needs of it, so a new layer is
one file: ``term`` (its formula and FLOPs, for describe), ``decode`` and
``cache_spec`` (its cached form, for generation; ``tokenwise`` maps need neither),
``trace_points`` (the names its trace adds). A capability entered with a map that
lacks a face it needs refuses at once, naming the map (``faces.require``).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .spaces import Space
from .term import Term, tex_name

Params = dict
Trace = dict
Cache = dict

# Notebook display, by format ("markdown", "latex"): ``jaxformer.describe`` fills it in
# when imported, so core depends on nothing above it.
DISPLAY: dict[str, Callable[[Map], str]] = {}


@dataclass(frozen=True)
class Param:
    """A parameter's shape, the names of its axes (the letters of the math: ``"H"``,
    ``"d"``, ``"k"``, ``"m"``, ``"V"``, ``"L"``; sharding rules map them to mesh axes)
    and its initial distribution: N(0, std²) if ``std > 0``, else the constant
    ``fill`` (0 for biases, 1 for gains)."""

    shape: tuple[int, ...]
    axes: tuple[str, ...]
    std: float = 0.0
    fill: float = 0.0

    def __post_init__(self):
        if len(self.axes) != len(self.shape):
            raise ValueError(f"Param: axes {self.axes} do not name every axis of {self.shape}")

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def is_param(x) -> bool:
    return isinstance(x, Param)


def materialize(spec: dict, key: jax.Array) -> Params:
    """Draw a params pytree from a pytree of ``Param``s with one random call.

    One flat N(0, 1) draw, sliced per parameter: compiling one random kernel per
    parameter shape costs XLA seconds each on CPU, which made initialising even a
    toy model slow.
    """
    leaves, tree = jax.tree.flatten(spec, is_leaf=is_param)
    return _materializer(tree, tuple(leaves))(key)


@functools.cache
def _materializer(tree, leaves: tuple[Param, ...]):
    def make(key):
        z = jax.random.normal(key, (max(1, sum(p.size for p in leaves if p.std)),))
        out, i = [], 0
        for p in leaves:
            if p.std:
                out.append(p.std * z[i : i + p.size].reshape(p.shape))
                i += p.size
            else:
                out.append(jnp.full(p.shape, p.fill, jnp.float32))
        return tree.unflatten(out)

    return jax.jit(make)


class Map:
    """Abstract base: subclasses set ``name`` and define ``domain``, ``codomain``,
    ``init`` and ``apply`` (and ``forward`` to expose internals in a trace)."""

    name: str
    namespace: bool = True  # leaves own a params namespace; wiring combinators don't
    tokenwise: bool = False  # acts on each token alone (its cached form is itself)
    # its params that its cached form multiplies by as x @ W, W [in, out], named as in its
    # ``decode_layout``: those a decode loop may store in fewer bits (``core.stored``)
    matrices: tuple[str, ...] = ()

    # -- the map itself --------------------------------------------------------
    @property
    def domain(self) -> Space:
        raise NotImplementedError

    @property
    def codomain(self) -> Space:
        raise NotImplementedError

    def spec(self) -> dict:
        """The parameters' shapes and initial distributions: a pytree of ``Param``."""
        return {}

    def init(self, key: jax.Array) -> Params:
        """A draw of the parameters (the pytree ``spec()`` describes)."""
        return materialize(self.spec(), key)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def forward(self, params: Params, x: jax.Array) -> tuple[jax.Array, Trace]:
        """``(f(x), points)``; a leaf's default trace is its own output."""
        y = self.apply(params, x)
        return y, {self.name: y}

    # -- checked entry points --------------------------------------------------
    def __call__(self, params: Params, x: jax.Array) -> jax.Array:
        env = self._check_in(x)
        y = self.apply(params, x)
        self.codomain.check(y, f"{self.name} (output)", env)
        return y

    def trace(
        self, params: Params, x: jax.Array, points=None, stop: bool = True
    ) -> tuple[jax.Array | None, Trace]:
        """``(f(x), every point)``; with ``points`` (flat names or globs such as
        ``"blocks.*.resid_post"``) ``(f(x), {name: point})`` for those alone, and with
        ``stop`` (the default) nothing past the last of them is computed: f(x) is then
        ``None`` unless a point needs the whole pass."""
        env = self._check_in(x)
        if points is None:
            y, out = self.forward(params, x)
        else:
            y, out = self.select(params, x, self.resolve(points), stop)
        if y is not None:
            self.codomain.check(y, f"{self.name} (output)", env)
        return y, out

    def resolve(self, patterns) -> frozenset[str]:
        """The point names matched by ``patterns`` (a name, a glob, or a list of them);
        a pattern that matches nothing is refused, with the names that look like it."""
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        names = self.points()
        found = set()
        for pat in patterns:
            hit = fnmatch.filter(names, pat) if any(c in pat for c in "*?[") else [pat]
            if not set(hit) <= set(names) or not hit:
                near = difflib.get_close_matches(pat.replace("*", "0"), names, 4, 0.5) or names[:4]
                raise KeyError(
                    f"{self.name}: no point matches {pat!r}; points are named like {near} "
                    f"(all {len(names)}: model.points())"
                )
            found.update(hit)
        return frozenset(found)

    def _check_in(self, x) -> dict:
        self.domain.validate(x, self.name)
        return self.domain.check(x, f"{self.name} (input)")

    # -- selective traces ---------------------------------------------------------
    def points(self) -> list[str]:
        """The flat names of the points its trace records, relative to its parent's
        namespace (``"attn.z"``; a repeat's ``"blocks.3.attn.z"``)."""
        return list(self.trace_points())

    def select(self, params: Params, x, want: frozenset[str], stop: bool):
        """``(f(x), {name: point for name in want})``. With ``stop`` it may return ``None``
        for f(x) once it holds every wanted point (the rest of the pass is not computed).
        A leaf asked for its output alone is applied (a blockwise attention stays
        blockwise); asked for an internal, it runs its traced form."""
        if want <= {self.name}:
            y = self.apply(params, x)
            return y, ({self.name: y} if want else {})
        y, points = self.forward(params, x)
        return y, {k: v for k, v in points.items() if k in want}

    def shared(self) -> frozenset[str]:
        """Keys of its parameters that an enclosing repeat files once for every layer
        rather than stacked per layer (a splice's map, ``core.splice``)."""
        if self.namespace:
            return frozenset()
        return frozenset().union(*(c.shared() for c in self.children()))

    # -- structure -------------------------------------------------------------
    def children(self) -> tuple[Map, ...]:
        return ()

    def with_children(self, children: tuple[Map, ...]) -> Map:
        return self

    def named(self, name: str) -> Map:
        """The same map under another name (its params move to that namespace)."""
        return dataclasses.replace(self, name=name)

    def namespaces(self) -> list[str]:
        """Names this map files in its parent's params dict."""
        if self.namespace:
            return [self.name]
        return [n for c in self.children() for n in c.namespaces()]

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Map]]:
        """Every map below (and including) this one, with its dotted path; a wrapper
        that shares its child's name (tokenwise, tie) stands for both."""
        seen = set()
        for path, m in self._walk(prefix):
            if path not in seen:
                seen.add(path)
                yield path, m

    def _walk(self, prefix: str) -> Iterator[tuple[str, Map]]:
        path = f"{prefix}{self.name}"
        yield path, self
        inner = f"{path}." if self.namespace else prefix
        for c in self.children():
            yield from c._walk(inner)

    def find(self, path: str) -> Map:
        """The sub-map at a dotted path such as ``"blocks.attn"``."""
        for p, m in self.walk():
            if p == path or p == f"{self.name}.{path}":
                return m
        raise KeyError(f"{self.name}: no sub-map at {path!r}; paths: {[p for p, _ in self.walk()]}")

    def replace(self, path: str, new: Map) -> Map:
        """A new composite with the sub-map at ``path`` replaced by ``new``.

        The replacement must have the same domain and codomain (interventions do
        not change the spaces); the original composite is unchanged.
        """
        old = self.find(path)
        if not (old.domain.same_as(new.domain) and old.codomain.same_as(new.codomain)):
            raise ValueError(
                f"replace {path!r}: {old.name} is {old.domain} → {old.codomain} but the "
                f"replacement {new.name} is {new.domain} → {new.codomain}"
            )
        return self._replace(old, new)

    def _replace(self, old: Map, new: Map) -> Map:
        if self is old:
            return new
        return self.with_children(tuple(c._replace(old, new) for c in self.children()))

    # -- namespaces: how a parent stores and passes this map's params -----------
    def spec_in(self) -> dict:
        return {self.name: self.spec()} if self.namespace else self.spec()

    def own(self, ns: Params) -> Params:
        return ns[self.name] if self.namespace else ns

    def __repr__(self) -> str:
        return f"{self.name}: {self.domain} → {self.codomain}"

    # -- faces: what each capability needs of the map ----------------------------------
    def term(self, T: int, x: str) -> Term:
        """Its formula and FLOPs per token at sequence length T, input named ``x``."""
        raise NotImplementedError(f"{type(self).__name__} states no term")

    def label(self) -> tuple[str, str]:
        """How it is named inside another map's formula: (text, tex)."""
        return self.name, tex_name(self.name)

    def trace_points(self) -> tuple[str, ...]:
        """The keys its own ``forward`` adds to a trace."""
        return (self.name,)

    def split(self, key: str) -> tuple[Callable, Callable]:
        """f = after ∘ before through its internal point ``key``: ``before(params, x) = v``
        and ``after(params, x, v) = f(x)``, so a splice can edit v (attention's head
        results ``"attn.z"``)."""
        raise NotImplementedError(f"{type(self).__name__} does not factor through {key!r}")

    def point_space(self, key: str) -> Space:
        """The space of its internal point ``key`` (one that ``split`` factors through)."""
        raise NotImplementedError(f"{type(self).__name__} does not factor through {key!r}")

    def cache_spec(self, S: int) -> dict:
        """The shapes of its decode cache with S slots (beside its children's)."""
        return {}

    def decode(self, params: Params, cache: Cache, x, positions, layer: tuple = ()):
        """(its output on the chunk x at ``positions``, its cache after writing the chunk).
        ``layer`` holds the indices of the enclosing repeats (a cache stays stacked)."""
        if self.tokenwise:
            return self(params, x), {}
        raise NotImplementedError(f"{type(self).__name__} has no cached form")

    def decode_layout(self, params: Params) -> Params:
        """Its own params as its ``decode`` reads them inside a decode loop, computed once
        before the loop (a layout the loop's matrix-vector products want); the default is
        the params themselves. Only a leaf's is applied (``generate.cache.decode_weights``)."""
        return params

    # -- the same, as a parent files them -------------------------------------------------
    def cache_in(self, S: int) -> dict:
        c = self.cache_spec(S)
        return {self.name: c} if self.namespace and c else c

    def decode_in(self, params: Params, cache: Cache, x, positions, layer: tuple = ()):
        own = cache.get(self.name, {}) if self.namespace else cache
        y, c = self.decode(self.own(params), own, x, positions, layer)
        return y, ({self.name: c} if self.namespace and c else c)

    # -- notebooks display a map as the chain of maps it is ------------------------
    def _repr_markdown_(self) -> str | None:
        show = DISPLAY.get("markdown")
        return show(self) if show else None

    def _repr_latex_(self) -> str | None:
        show = DISPLAY.get("latex")
        return show(self) if show else None
