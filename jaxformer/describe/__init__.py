"""The model states itself: a composite as the chain of maps it is.

    describe(model)               # unicode text: each map's name, domain → codomain,
    describe(model, "markdown")   # formula, parameter shapes and counts, FLOPs per token
    describe(model, "latex")      # (display math: an array)

In a notebook a composite displays itself this way: importing this package fills
core's display hook (``core.DISPLAY``). Each map states its own formula and FLOPs
(its ``term`` face); ``chain.py`` walks the composite, ``render.py`` writes it out.
"""

from __future__ import annotations

from ..core import DISPLAY, Map, Term
from ..models import Config, build
from .chain import Chain, Row, chain
from .render import RENDERERS, latex_document

FORMATS = tuple(RENDERERS)


def describe(model, format: str = "text", T: int | None = None) -> str:
    """``model`` (a ``Map`` or a ``Config``) as a chain of maps, in ``format`` ("text",
    "markdown" or "latex"), with FLOPs per token counted at sequence length ``T``
    (default: the model's context)."""
    if format not in RENDERERS:
        raise ValueError(f"describe: format must be one of {FORMATS}, got {format!r}")
    if not isinstance(model, Map):
        if not isinstance(model, Config):
            raise TypeError(f"describe takes a Map or a Config, got {type(model).__name__}")
        model = build(model)
    return RENDERERS[format](chain(model, T))


DISPLAY.update(markdown=lambda m: describe(m, "markdown"), latex=lambda m: describe(m, "latex"))


__all__ = [
    "FORMATS",
    "Chain",
    "Row",
    "Term",
    "chain",
    "describe",
    "latex_document",
]
