"""Splices: a map inserted into a composite at one of its points, checked when built.

    splice(model, "blocks.3.resid_mid", g)              the point v becomes g(v)
    splice(model, "blocks.3.attn.z", g)                 each head's result z, through g
    splice(model, "blocks.3.mlp", g, op="replace")      the map making the point becomes g
    splice(model, "blocks.*.resid_mid", g)              at every layer, one g
    splice(model, "blocks.*.resid_mid", g, per_layer=True)  at every layer, its own g

g : S → S must map the point's space S into itself (for ``op="replace"``, have the
replaced map's domain and codomain), or ``ShapeError`` names the point and both spaces
as the composite is built, before any data flows: an SAE of the wrong width cannot be
spliced in. The result is a new composite; the model is unchanged.

Inside a repeat, a splice at one layer makes the stack a ``pattern`` of the plain block
and the spliced one, so no layer is unrolled and the other layers' params stay stacked.
g's own parameters are filed once, not per layer, under ``"splice:<point>"`` in the
repeat's namespace (the root's, for a point outside any repeat): ``with_splice`` files
them. With ``per_layer`` (every layer, ``"*"``) they are stacked on the layers' L axis,
like the block's own. The trace records the point after g, and g's own points under the point's name
(``"blocks.3.resid_mid.sae.latents"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .map import Map, Params
from .spaces import ShapeError, Space
from .stacks import Pattern, Repeat, pattern
from .wrappers import Wrapper

OPS = ("insert", "replace")


@dataclass(frozen=True, repr=False)
class Spliced(Wrapper):
    """f with g at its point ``key``: its output (``key == f.name``) or an internal point
    that f factors through (``f.split(key)``: attention's ``"attn.z"``); with
    ``op="replace"``, g in f's place. g's params are ``params[slot]``."""

    g: Map = None
    key: str = ""
    op: str = "insert"
    slot: str = ""
    per_layer: bool = False  # g's params stacked on L with the block's (not shared)

    def spec(self):
        return self.f.spec_in() | ({self.slot: self.g.spec()} if self.g.spec() else {})

    def shared(self):
        return self.f.shared() | (set() if self.per_layer else {self.slot})

    def _g(self, params, v):
        if self.slot not in params and self.g.spec():
            raise KeyError(
                f"splice {self.slot[7:]!r}: the parameters of {self.g.name} are missing; "
                "file them with with_splice(params, point, g_params)"
            )
        return self.g.trace(params.get(self.slot, {}), v)

    def apply(self, params, x):
        if self.op == "replace":
            return self._g(params, x)[0]
        if self.key == self.f.name:
            return self._g(params, self.f(self.inner(params), x))[0]
        before, after = self.f.split(self.key)
        return after(self.inner(params), x, self._g(params, before(self.inner(params), x))[0])

    def forward(self, params, x):
        if self.op == "replace":
            y, inner = self._g(params, x)
            return y, {self.name: y} | self._prefixed(inner)
        y, points = self.f.trace(self.inner(params), x)
        if self.key == self.f.name:
            y, inner = self._g(params, y)
            return y, points | {self.key: y} | self._prefixed(inner)
        _, after = self.f.split(self.key)
        v, inner = self._g(params, points[self.key])
        y = after(self.inner(params), x, v)
        return y, points | {self.key: v, self.name: y} | self._prefixed(inner)

    def _prefixed(self, inner: dict) -> dict:
        return {f"{self.key}.{k}": v for k, v in _flat(inner).items()}

    def points(self):
        own = self.f.points() if self.op == "insert" else [self.name]
        return own + [f"{self.key}.{k}" for k in self.g.points()]

    def decode(self, params, cache, x, positions, layer=()):
        if self.op == "insert" and self.key == self.f.name and self.g.tokenwise:
            y, c = super().decode(params, cache, x, positions, layer)
            return self._g(params, y)[0], c
        raise NotImplementedError(
            f"splice at {self.key!r}: generation needs a map that acts on each token alone "
            "(tokenwise) at a map's output"
        )


def _flat(points: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in points.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def splice(model: Map, at: str, g: Map, op: str = "insert", per_layer: bool = False) -> Map:
    """The composite with g spliced in at the point ``at`` (a name from ``model.points()``;
    ``"<repeat>.*.<key>"`` for every layer of a repeat, each with its own params if
    ``per_layer``)."""
    if op not in OPS:
        raise ValueError(f"splice: op must be one of {OPS}, got {op!r}")
    stack, layer, key = _locate(model, at)
    if per_layer and (stack is None or layer is not None):
        raise ValueError(
            f"splice at {at!r}: per_layer needs every layer of a repeat, '<repeat>.*.<key>'"
        )
    where = stack.f if stack is not None else model
    producer = _producer(where, key, at)
    space = _space(producer, key, at)
    want = (producer.domain, producer.codomain) if op == "replace" else (space, space)
    if not (g.domain.same_as(want[0]) and g.codomain.same_as(want[1])):
        raise ShapeError(
            f"splice at {at!r}: the point is {_spaces(*want)} but {g.name} is "
            f"{_spaces(g.domain, g.codomain)}; give {g.name} the point's space"
        )
    if op == "replace" and key != producer.name:
        raise ValueError(f"splice at {at!r}: op='replace' replaces a map; {key!r} is inside one")

    def spliced(block: Map) -> Map:
        return block._replace(producer, Spliced(producer, g, key, op, f"splice:{at}", per_layer))

    if stack is None:
        return spliced(model)
    return model._replace(stack, _respliced(stack, layer, spliced))


def space_at(model: Map, at: str) -> Space:
    """The space of the point ``at``: what a map spliced in there maps into itself."""
    stack, _, key = _locate(model, at)
    producer = _producer(stack.f if stack is not None else model, key, at)
    return _space(producer, key, at)


def _spaces(a: Space, b: Space) -> str:
    return str(a) if a.same_as(b) else f"{a} → {b}"


def _respliced(stack: Repeat, layer: int | None, spliced) -> Repeat:
    """The stack with the block of ``layer`` (every layer's, for None) spliced."""
    kinds = stack.kinds if isinstance(stack, Pattern) else (stack.f,)
    if layer is None:
        new = tuple(spliced(k) for k in kinds)
        if isinstance(stack, Pattern):
            return dataclasses.replace(stack, f=new[0], kinds=new)
        return dataclasses.replace(stack, f=new[0])
    kind = list(stack.kind) if isinstance(stack, Pattern) else [0] * stack.L
    labels = stack.labels if isinstance(stack, Pattern) else (stack.f.name,)
    new_label = f"{labels[kind[layer]]}@{layer}"
    kind[layer], kinds = len(kinds), (*kinds, spliced(kinds[kind[layer]]))
    return pattern(kinds, kind, (*labels, new_label), stack.name, stack.remat, stack.unrolled)


def _locate(model: Map, at: str) -> tuple[Repeat | None, int | None, str]:
    """(the repeat the point is in, its layer (None: every layer), the point's key)."""
    if not isinstance(at, str) or not at:
        raise ValueError(f"splice: the point must be a name from model.points(), got {at!r}")
    name, _, rest = at.partition(".")
    stacks = [m for p, m in model.walk() if isinstance(m, Repeat) and p == m.name]
    stack = next((m for m in stacks if m.name == name), None)
    if stack is not None:
        l, _, key = rest.partition(".")
        if l != "*" and not (l.isdigit() and int(l) < stack.L):
            raise ValueError(
                f"splice at {at!r}: {name} has layers 0 … {stack.L - 1}; name one, or * for all"
            )
        probe = f"{name}.{0 if l == '*' else l}.{key}"
        if probe not in model.points():
            model.resolve(probe)  # raises, with the names that look like it
        return stack, None if l == "*" else int(l), key
    model.resolve(at)
    return None, None, at


def _producer(block: Map, key: str, at: str) -> Map:
    """The outermost map of ``block`` (outside every namespace but its own) that records
    ``key``: the map named ``key``, or the leaf whose internal point it is."""
    for path, m in block.walk():
        if path != m.name or m is block and m.name != key:
            continue
        if m.name == key or (key.startswith(f"{m.name}.") and key in m.points()):
            return m
    raise ValueError(f"splice at {at!r}: no map of {block.name} records {key!r}")


def _space(m: Map, key: str, at: str) -> Space:
    if key == m.name:
        return m.codomain
    try:
        return m.point_space(key)
    except NotImplementedError:
        raise ValueError(
            f"splice at {at!r}: {type(m).__name__} cannot be split at its point {key!r}; "
            f"splice at its output {m.name!r} instead"
        ) from None


def with_splice(params: Params, at: str, g_params: Params) -> Params:
    """``params`` with the spliced map's own params filed where the splice at ``at`` reads
    them: ``params[<repeat>]["splice:<at>"]`` inside a repeat, else ``params["splice:<at>"]``."""
    name, _, rest = at.partition(".")
    l = rest.partition(".")[0]
    slot = f"splice:{at}"
    if (l.isdigit() or l == "*") and isinstance(params.get(name), dict):
        return {**params, name: {**params[name], slot: g_params}}
    return {**params, slot: g_params}
