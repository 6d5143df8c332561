"""Spaces, maps and their composition; no model knowledge."""

from .combinators import Compose, Parallel, Residual, compose, parallel, residual
from .faces import FaceError, require
from .map import DISPLAY, Cache, Map, Param, Params, Trace, is_param, materialize
from .spaces import Real, ShapeError, Space, Tokens
from .splice import Spliced, space_at, splice, with_splice
from .stacks import Pattern, Repeat, pattern, repeat
from .term import Term, per_token, tex_name, tex_number, tex_param
from .wrappers import Scope, Tie, Tokenwise, Wrapper, scope, tie, tokenwise, untie

__all__ = [
    "DISPLAY",
    "Cache",
    "Compose",
    "FaceError",
    "Map",
    "Param",
    "Parallel",
    "Params",
    "Real",
    "Pattern",
    "Repeat",
    "Residual",
    "Scope",
    "ShapeError",
    "Space",
    "Spliced",
    "Term",
    "Tie",
    "Tokens",
    "Tokenwise",
    "Trace",
    "Wrapper",
    "compose",
    "is_param",
    "materialize",
    "parallel",
    "per_token",
    "pattern",
    "repeat",
    "require",
    "residual",
    "scope",
    "space_at",
    "splice",
    "tex_name",
    "tex_number",
    "tex_param",
    "tie",
    "tokenwise",
    "untie",
    "with_splice",
]
