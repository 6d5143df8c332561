"""A family: everything about one kind of model, registered under its name.

    @family("gpt2", defaults=dict(tied=True, norm_eps=1e-5, d_mlp=lambda c: 4 * c.d_model))
    def block(c: Config) -> Map: ...          # B: R^{T×d} → R^{T×d}, a composition of layers

A family file (``models/families/<name>.py``) holds the family's defaults (a value, or
a function of the config for a default that depends on other fields), its validation
(``check``) and its block. ``build`` assembles ``U ∘ N_f ∘ B^L ∘ P ∘ E`` from the
family's ``stem`` (tokens → stream), ``layers`` (the stack of blocks) and ``head``
(stream → logits), each defaulting to the common form in ``parts.py``; a family whose
embedding is scaled, whose layers alternate, or whose logits are capped overrides one.
No other file branches on the family: ``FAMILIES`` is the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core import Map

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config

Builder = Callable[["Config"], Map]


@dataclass(frozen=True)
class Family:
    name: str
    block: Builder
    defaults: dict = field(default_factory=dict)
    check: Callable[[Config], None] = lambda c: None
    stem: Builder | None = None  # None: parts.stem
    layers: Callable | None = None  # (c, remat) → the stack; None: parts.layers (repeat)
    head: Builder | None = None  # None: parts.head


FAMILIES: dict[str, Family] = {}


def family(name: str, *, defaults: dict | None = None, check=None, **builders) -> Callable:
    """Register the decorated ``block(c)`` as the family ``name`` (``builders``: ``stem``,
    ``layers``, ``head`` overrides). Returns the block unchanged."""

    def register(block: Builder) -> Builder:
        check_ = check or (lambda c: None)
        FAMILIES[name] = Family(name, block, dict(defaults or {}), check_, **builders)
        return block

    return register


def family_of(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"Config.family must be one of {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name]
