"""The model states itself: a composite as the chain of maps it is.

    describe(model)               # unicode text: each map's name, domain → codomain,
    describe(model, "markdown")   # formula, parameter shapes and counts, FLOPs per token
    describe(model, "latex")      # (display math: an array)

In a notebook a composite displays itself this way (``Map._repr_markdown_``,
``Map._repr_latex_``). ``terms.py`` holds each map's formula and FLOPs,
``chain.py`` walks the composite, ``render.py`` writes it out.
"""

from __future__ import annotations

from ..core import Map
from .chain import Chain, Row, chain
from .render import RENDERERS, latex_document
from .terms import TERMS, Term, term, term_of

FORMATS = tuple(RENDERERS)


def describe(model, format: str = "text", T: int | None = None) -> str:
    """``model`` (a ``Map`` or a ``Config``) as a chain of maps, in ``format`` ("text",
    "markdown" or "latex"), with FLOPs per token counted at sequence length ``T``
    (default: the model's context)."""
    if format not in RENDERERS:
        raise ValueError(f"describe: format must be one of {FORMATS}, got {format!r}")
    if not isinstance(model, Map):
        from ..models import Config, build

        if not isinstance(model, Config):
            raise TypeError(f"describe takes a Map or a Config, got {type(model).__name__}")
        model = build(model)
    return RENDERERS[format](chain(model, T))


__all__ = [
    "FORMATS",
    "TERMS",
    "Chain",
    "Row",
    "Term",
    "chain",
    "describe",
    "latex_document",
    "term",
    "term_of",
]
