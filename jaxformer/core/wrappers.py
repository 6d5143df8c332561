"""Wrappers: a map seen through another, with the same spaces.

    Wrapper          the base: stands in for f (its name, spaces, params, faces)
    tokenwise(f)     (x_t)_t ↦ (f(x_t))_t        lifts f: R^d → R^e to R^{T×d} → R^{T×e}
    scope(f, name)   f, with its params filed under ``name``
    tie(f, dst, src) f with one parameter defined as a function of another

A wrapper changes how f is called (a lift, a namespace, a reparametrisation, a
sharding constraint, a checkpoint name), never what f is: ``walk`` and ``replace``
see through every one of them, and so do the faces (describe, the cached decode).
``untie(model, params)`` undoes every tie of a composite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from .map import Map, Params
from .spaces import Space
from .term import Term, tex_param


@dataclass(frozen=True, repr=False)
class Wrapper(Map):
    """f, called through this map: the same name, domain, codomain and parameters.
    Subclasses change ``inner`` (the params f receives), ``apply`` or ``forward``."""

    f: Map
    namespace: ClassVar[bool] = False

    name = property(lambda self: self.f.name)
    domain = property(lambda self: self.f.domain)
    codomain = property(lambda self: self.f.codomain)
    tokenwise = property(lambda self: self.f.tokenwise)

    def children(self):
        return (self.f,)

    def with_children(self, children):
        return dataclasses.replace(self, f=children[0])

    def named(self, name):
        return dataclasses.replace(self, f=self.f.named(name))

    def spec(self):
        return self.f.spec_in()

    def inner(self, params: Params) -> Params:
        """The params f receives."""
        return self.f.own(params)

    def apply(self, params, x):
        return self.f(self.inner(params), x)

    def forward(self, params, x):
        return self.f.trace(self.inner(params), x)

    def points(self):
        return self.f.points()

    def select(self, params, x, want, stop):
        if type(self).apply is not Wrapper.apply:  # it changes how f is called: run it whole
            return Map.select(self, params, x, want, stop)
        return self.f.select(self.inner(params), x, want, stop)

    # faces: those of f
    def label(self):
        return self.f.label()

    def term(self, T, x):
        return self.f.term(T, x)

    def trace_points(self):
        return self.f.trace_points()

    def cache_spec(self, S):
        return self.f.cache_in(S)

    def decode(self, params, cache, x, positions, layer=()):
        return self.f.decode_in(self.inner(params), cache, x, positions, layer)


@dataclass(frozen=True, repr=False)
class Tokenwise(Wrapper):
    """Lift f: R^{d} → R^{e} to R^{T×d} → R^{T×e}, (x_t)_t ↦ (f(x_t))_t, by ``vmap``."""

    axis: str = "T"
    tokenwise: ClassVar[bool] = True

    domain = property(lambda self: _lift(self.f.domain, self.axis))
    codomain = property(lambda self: _lift(self.f.codomain, self.axis))

    def apply(self, params, x):
        return jax.vmap(lambda x_t: self.f(self.inner(params), x_t))(x)

    def forward(self, params, x):
        return jax.vmap(lambda x_t: self.f.trace(self.inner(params), x_t))(x)

    def term(self, T, x):
        f, tf = self.f.label()
        return Term((f"{x} ↦ ({f}({x}_t))_t",), (rf"{x} \mapsto ({tf}({x}_t))_t",))

    def decode(self, params, cache, x, positions, layer=()):
        return self(params, x), {}


def _lift(s: Space, axis: str) -> Space:
    return Space((axis, *s.shape), s.kind, s.n, s.limits)


def tokenwise(f: Map, axis: str = "T") -> Tokenwise:
    return Tokenwise(f, axis)


@dataclass(frozen=True, repr=False)
class Scope(Wrapper):
    """f with its parameters filed under ``scope`` (a namespace boundary; its name)."""

    scope: str = "scope"
    namespace: ClassVar[bool] = True

    name = property(lambda self: self.scope)

    def named(self, name):
        return dataclasses.replace(self, scope=name)

    def forward(self, params, x):
        y, points = self.f.trace(self.inner(params), x)
        return y, {self.name: points}

    def points(self):
        return [f"{self.name}.{n}" for n in self.f.points()]

    def select(self, params, x, want, stop):
        cut = len(self.name) + 1
        y, got = self.f.select(self.inner(params), x, frozenset(n[cut:] for n in want), stop)
        return y, {f"{self.name}.{n}": v for n, v in got.items()}

    def label(self):
        return Map.label(self)

    def term(self, T, x):
        f, tf = self.f.label()
        return Term((f"= {f}  (parameters under {self.name!r})",), (f"= {tf}",))


def scope(f: Map, name: str) -> Scope:
    return Scope(f, name)


@dataclass(frozen=True, repr=False)
class Tie(Wrapper):
    """f with the parameter at ``dst`` defined as ``fn(param at src)``.

    Weight tying as a reparametrisation: GPT-2's unembedding W_U = W_Eᵀ is
    ``tie(model, dst=("unembed", "W_U"), src=("embed", "W_E"), fn=jnp.transpose)``.
    The tied parameter is removed from the pytree; gradients reach ``src`` through both uses.
    """

    dst: tuple[str, ...] = ()
    src: tuple[str, ...] = ()
    fn: Callable = jnp.transpose

    def spec(self):
        spec = self.f.spec_in()
        _get(spec, self.src)  # fail at build time if the source is missing
        _get(spec, self.dst)
        return _set(spec, self.dst, None)

    def untie(self, params: Params) -> Params:
        """The inner map's full params, with ``dst`` filled in from ``src``."""
        return _set(params, self.dst, self.fn(_get(params, self.src)))

    def inner(self, params):
        return self.f.own(self.untie(params))

    def term(self, T, x):
        """One parameter defined by another: ``W_U = W_Eᵀ`` for GPT-2's tied unembedding."""
        dst, src = self.dst[-1], self.src[-1]
        if self.fn is jnp.transpose:
            return Term((f"{dst} = {src}ᵀ",), (rf"{tex_param(dst)} = {tex_param(src)}^\top",))
        fn = getattr(self.fn, "__name__", "fn")
        return Term(
            (f"{dst} = {fn}({src})",), (rf"{tex_param(dst)} = \mathrm{{{fn}}}({tex_param(src)})",)
        )


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


def untie(model: Map, params: Params) -> tuple[Map, Params]:
    """The same function with every tie undone: each ``Tie`` replaced by the map it wraps,
    its tied parameter filled in (W_U = W_Eᵀ). A decode loop then transposes W_E once,
    not at every token; weight processing can then change W_U alone."""
    for tie_ in _ties(model):
        params = tie_.untie(params)
        model = model._replace(tie_, tie_.f)
    return model, params


def _ties(m: Map) -> list[Tie]:
    """The ties that read the root's params (reachable without entering a namespace)."""
    here = [m] if isinstance(m, Tie) else []
    below = [t for c in m.children() for t in _ties(c)]
    if below and m.namespace and not isinstance(m, Tie):
        raise NotImplementedError(f"untie: a tie inside the namespace {m.name!r}")
    return here + below
