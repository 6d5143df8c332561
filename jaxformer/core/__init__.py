"""Spaces, maps and their composition; no model knowledge."""

from .combinators import (
    Compose,
    Parallel,
    Repeat,
    Residual,
    Scope,
    Tie,
    Tokenwise,
    compose,
    parallel,
    repeat,
    residual,
    scope,
    tie,
    tokenwise,
)
from .map import Map, Param, Params, Trace, is_param, materialize
from .spaces import Real, ShapeError, Space, Tokens

__all__ = [
    "Compose",
    "Map",
    "Param",
    "Parallel",
    "Params",
    "Real",
    "Repeat",
    "Residual",
    "Scope",
    "ShapeError",
    "Space",
    "Tie",
    "Tokens",
    "Tokenwise",
    "Trace",
    "compose",
    "parallel",
    "repeat",
    "residual",
    "scope",
    "tie",
    "tokenwise",
    "is_param",
    "materialize",
]
