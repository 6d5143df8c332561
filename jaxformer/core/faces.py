"""Faces: what a capability needs of every map in a composite, checked on entry.

A capability (describe, generate, train's final sample) calls ``require(model, face,
capability)`` before doing any work; a map that lacks the face is named at once,
never after a run has trained for an hour.

    term    its formula and FLOPs (``Map.term``)
    decode  its cached form (``Map.decode`` and ``cache_spec``), unless ``tokenwise``
"""

from __future__ import annotations

from collections.abc import Iterator

from .map import Map


class FaceError(TypeError):
    """A map lacks a face that a capability needs; the message names the map."""


def _has_term(m: Map) -> bool:
    return type(m).term is not Map.term


def _has_decode(m: Map) -> bool:
    return m.tokenwise or type(m).decode is not Map.decode


FACES = {
    "term": (_has_term, "a term (define term(self, T, x) -> Term: its formula and FLOPs)"),
    "decode": (
        _has_decode,
        "a cached form (define decode(...) and cache_spec(S), or set tokenwise = True "
        "if it acts on each token alone)",
    ),
}


def maps(m: Map, path: str = "") -> Iterator[tuple[str, Map]]:
    """Every map below (and including) ``m`` with its dotted path, wrappers and what they
    wrap alike (``Map.walk`` lists a wrapper in place of the map it stands for)."""
    here = f"{path}{m.name}"
    yield here, m
    for c in m.children():
        yield from maps(c, f"{here}." if m.namespace else path)


def missing(model: Map, face: str) -> list[tuple[str, Map]]:
    has, _ = FACES[face]
    return [(p, m) for p, m in maps(model) if not has(m)]


def require(model: Map, face: str, capability: str) -> None:
    """Raise ``FaceError`` naming the first map of ``model`` that lacks ``face``."""
    lacking = missing(model, face)
    if lacking:
        path, m = lacking[0]
        raise FaceError(
            f"{capability}: the map {path!r} ({type(m).__name__}) has no {face} face; "
            f"{type(m).__name__} needs {FACES[face][1]}"
        )
