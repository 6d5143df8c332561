"""A composite as the chain of maps it applies, in data-flow order (embedding first).

``chain(model, T)`` walks the composite once and returns rows: each map's number
(``3.1.2``), name, domain → codomain, term (formula and FLOPs per token, the map's
own ``term`` face), parameter shapes and counts. Groups (repeat, residual, a named
compose) hold their members; an unnamed compose (``attn∘ln1``) is inlined, and a
tokenwise lift of a layer shows as that layer on ``ℝ^{T×d}``, its formula written
for one token ``x_t``. Inside ``repeat(f, L)`` rows are per copy and the group
counts L copies; inside ``pattern`` (local and global layers) each kind is a group of
its own copies. A tied parameter (``W_U = W_Eᵀ``) is listed and counted once,
under its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core import (
    Compose,
    Map,
    Parallel,
    Param,
    Pattern,
    Repeat,
    Space,
    Term,
    Tie,
    Tokenwise,
    Wrapper,
)
from ..core.faces import require

DEFAULT_T = 1024  # the sequence length FLOPs are counted at when the model bounds none


@dataclass(frozen=True)
class ParamRow:
    """A parameter of a row: its key, shape, axis names, and the formula that ties it."""

    name: str
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    tied: str | None = None

    @property
    def size(self) -> int:
        return 0 if self.tied else math.prod(self.shape)


@dataclass(frozen=True)
class Row:
    number: str  # "3.1.2": the position in the chain
    depth: int
    name: str
    map: Map
    domain: Space
    codomain: Space
    term: Term
    params: tuple[ParamRow, ...]
    count: int  # parameters of this map and its members (per copy inside a repeat)
    flops: int  # FLOPs per token of this map and its members (as computed)
    copies: int = 1  # L for a repeat: its count and flops cover L copies of its members
    model_flops: int = 0  # the FLOPs its math needs (``Term.model_flops``)


@dataclass(frozen=True)
class Chain:
    """The model's rows and totals; ``ties`` are the header's notes (``W_U = W_Eᵀ``)."""

    name: str
    domain: Space
    codomain: Space
    T: int
    rows: tuple[Row, ...]
    count: int
    flops: int  # per token of the forward pass, as computed (the hardware FLOPs)
    ties: tuple[Term, ...]
    active: int = 0  # the parameters one token uses (< count with a mixture of experts)
    model_flops: int = 0  # per token, as the math needs them (causal attention: half)


def chain(model: Map, T: int | None = None) -> Chain:
    """The chain of ``model`` with FLOPs counted at sequence length ``T`` (default: the
    context the model's domain bounds T by, else ``DEFAULT_T``)."""
    limit = dict(model.domain.limits).get("T")
    if T is None:
        T = limit or DEFAULT_T
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int (a sequence length), got {T!r}")
    if limit is not None and T > limit:
        raise ValueError(f"T={T} exceeds the context {limit}; pass T ≤ {limit}")
    require(model, "term", "describe")
    walk = _Walk(T)
    nodes = walk.nodes(model, (), root=True)
    rows = tuple(r for i, n in enumerate(nodes) for r in n.rows(str(i + 1), 0))
    count = sum(n.count for n in nodes)
    flops = sum(n.flops for n in nodes)
    active = sum(n.active for n in nodes)
    model_flops = sum(n.model_flops for n in nodes)
    return Chain(
        model.name, model.domain, model.codomain, T, rows, count, flops, walk.notes, active,
        model_flops,
    )  # fmt: skip


@dataclass
class _Node:
    map: Map
    name: str
    domain: Space
    codomain: Space
    term: Term
    params: tuple[ParamRow, ...]
    members: list[_Node]
    copies: int = 1

    @property
    def count(self) -> int:
        return sum(p.size for p in self.params) + self.copies * sum(m.count for m in self.members)

    @property
    def flops(self) -> int:
        return self.term.flops + self.copies * sum(m.flops for m in self.members)

    @property
    def model_flops(self) -> int:
        return self.term.model + self.copies * sum(m.model_flops for m in self.members)

    @property
    def active(self) -> int:
        """The parameters a token uses: a layer's ``active_params`` face where it has one
        (a mixture: its router and k experts), else all of them."""
        own = getattr(self.map, "active_params", None)
        own = own() if own and not self.members else sum(p.size for p in self.params)
        return own + self.copies * sum(m.active for m in self.members)

    def rows(self, number: str, depth: int) -> list[Row]:
        own = Row(
            number, depth, self.name, self.map, self.domain, self.codomain, self.term,
            self.params, self.count, self.flops, self.copies, self.model_flops,
        )  # fmt: skip
        inner = [m.rows(f"{number}.{i + 1}", depth + 1) for i, m in enumerate(self.members)]
        return [own, *(r for rows in inner for r in rows)]


class _Walk:
    """Builds nodes; ``ties`` maps a tied parameter's path to its formula."""

    def __init__(self, T: int):
        self.T = T
        self.ties: dict[tuple[str, ...], str] = {}
        self.notes: tuple[Term, ...] = ()

    def tie(self, m: Tie, ns: tuple[str, ...]) -> None:
        t = m.term(self.T, "x")
        self.ties[ns + m.dst] = t.text[0]
        self.notes += (t,)

    def nodes(self, m: Map, ns: tuple[str, ...], root: bool = False) -> list[_Node]:
        """``m`` as nodes; ``ns`` is the path of the params dict that ``m`` files into
        (the root's params are the whole pytree, whatever its namespace)."""
        own = ns if root or not m.namespace else (*ns, m.name)
        if isinstance(m, Tie):
            self.tie(m, ns)
            return self.nodes(m.f, ns, root)
        if isinstance(m, Compose) and (root or m.inline):
            # the model's own chain, or an unnamed composite: its maps stand in its place
            return [n for c in reversed(m.maps) for n in self.nodes(c, own)]
        if isinstance(m, Tokenwise) and not m.f.children():
            # a layer lifted to sequences: one row on ℝ^{T×d}, formula for one token x_t
            node = self.nodes(m.f, ns, root)[0]
            node.domain, node.codomain = m.domain, m.codomain
            node.term = m.f.term(self.T, "x_t")
            return [node]
        if isinstance(m, Wrapper) and not m.namespace and type(m).term is Wrapper.term:
            return self.nodes(m.f, ns, root)  # a stand-in (a model's config, a pin): see through
        term = m.term(self.T, "x")
        if not m.children():
            params = tuple(self._param(own, keys, p) for keys, p in _flatten(m.spec()))
            return [_Node(m, m.name, m.domain, m.codomain, term, params, [])]
        if isinstance(m, Pattern):  # each kind a group of its copies, named by its label
            members = []
            for i, (label, kind) in enumerate(zip(m.labels, m.kinds, strict=True)):
                for n in self.nodes(kind, own) if m.count(i) else ():
                    n.name, n.copies = f"{label} {n.name}", m.count(i)
                    members.append(n)
            return [_Node(m, m.name, m.domain, m.codomain, term, (), members)]
        order = m.children() if isinstance(m, Parallel) else reversed(m.children())
        members = [n for c in order for n in self.nodes(c, own)]
        copies = m.L if isinstance(m, Repeat) else 1
        return [_Node(m, m.name, m.domain, m.codomain, term, (), members, copies)]

    def _param(self, ns: tuple[str, ...], keys: tuple[str, ...], p: Param) -> ParamRow:
        return ParamRow(".".join(keys), p.shape, p.axes, self.ties.get(ns + keys))


def _flatten(spec: dict, keys: tuple[str, ...] = ()):
    """(key path, Param) pairs in the order the layer lists them (jax.tree sorts keys)."""
    for k, v in spec.items():
        if isinstance(v, Param):
            yield (*keys, k), v
        elif v is not None:
            yield from _flatten(v, (*keys, k))
