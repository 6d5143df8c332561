"""Combinators: new maps from old, checked when they are built.

    compose(g, f)      g ∘ f                       X → Y → Z, needs cod f = dom g
    residual(f)        id + f                      X → X, needs dom f = cod f
    parallel(f, g, …)  x ↦ f(x) + g(x) + …         a sum of maps with one domain/codomain
    tokenwise(f)       (x_t)_t ↦ (f(x_t))_t        lifts f: R^d → R^e to R^{T×d} → R^{T×e}

The stacks (repeat, pattern) are in ``stacks.py``, the wrappers (tokenwise, scope, tie)
in ``wrappers.py``. Each combinator is itself
a ``Map`` with every face (term, cached form): composites compose.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from .map import Map, Trace
from .spaces import ShapeError
from .term import Term, per_token


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

    def points(self):
        return [n for m in reversed(self.maps) for n in m.points()]

    def select(self, params, x, want, stop):
        got: Trace = {}
        for i, m in enumerate(reversed(self.maps)):
            mine = want.intersection(m.points())
            # m may stop early if nothing wanted comes after it
            last = stop and want <= got.keys() | mine
            if mine:
                x, p = m.select(m.own(params), x, mine, last)
                got.update(p)
            else:
                x = m(m.own(params), x)
            if x is None or (last and i + 1 < len(self.maps)):
                return None, got
        return x, got

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

    def points(self):
        return [*self.f.points(), self.name]

    def select(self, params, x, want, stop):
        inner = want - {self.name}
        if not inner:
            w, got = self.f(self.f.own(params), x), {}
        else:
            w, got = self.f.select(self.f.own(params), x, inner, stop and inner == want)
            if w is None:
                return None, got
        y = x + w
        return y, got | ({self.name: y} if self.name in want else {})

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

    def points(self):
        return [*(n for m in self.maps for n in m.points()), self.name]

    def select(self, params, x, want, stop):
        ys, got = [], {}
        for m in self.maps:  # the sum needs every summand: none stops early
            mine = want.intersection(m.points())
            y, p = m.select(m.own(params), x, mine, False) if mine else (m(m.own(params), x), {})
            ys.append(y)
            got.update(p)
        y = sum(ys)
        return y, got | ({self.name: y} if self.name in want else {})

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
