"""The named parts of a transformer composite, and its parameters with ties undone.

The circuits read a model the way ``jaxformer.models.layout`` names its parts:

    U ∘ N_f? ∘ B^L ∘ P? ∘ E,      B = (id + M ∘ N_2)? ∘ (id + A ∘ N_1?)

with the maps named ``embed``, ``pos``, ``blocks`` (a ``Repeat``), ``blocks.ln1``,
``blocks.attn``, ``blocks.ln2``, ``blocks.mlp``, ``ln_f`` and ``unembed``. Any family
that keeps those names, and a model assembled by hand under them, is read the same way;
what its structure breaks of the circuits' identities (a post-norm block, soft-capped
logits, QK-norm) is recorded at once (``structure.py``) and refused where it is needed.
A parallel block (x + A(N_1 x) + M(N_2 x), GPT-NeoX) keeps every identity: its heads and
its MLP read the block's input, as the sums assume; it only has no ``resid_mid``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Params, Repeat, Tie, Tokenwise, untie
from ..core.faces import maps
from ..layers import Attention, Embedding, LearnedPositions, SinusoidalPositions, Unembedding
from ..layers.positional import sinusoid_table
from ..models import layout as N
from ..models import validate_tokens
from .structure import refusals

# Anatomy's fields and the paths of the parts they hold.
PARTS = {
    "embed": N.EMBED, "pos": N.POS, "blocks": N.BLOCKS,
    "attn": N.at(N.BLOCKS, N.ATTN), "ln1": N.at(N.BLOCKS, N.LN1),
    "mlp": N.at(N.BLOCKS, N.MLP), "ln2": N.at(N.BLOCKS, N.LN2),
    "ln_f": N.LN_F, "unembed": N.UNEMBED,
}  # fmt: skip


def _find(model: Map, path: str) -> Map | None:
    try:
        m = model.find(path)
    except KeyError:
        return None
    return m.f if isinstance(m, Tokenwise) else m


@dataclass(frozen=True)
class Anatomy:
    """The maps of a transformer composite; absent parts are ``None``. Norms and MLPs are
    the token maps (R^d → R^d), unwrapped from their ``tokenwise``."""

    embed: Embedding
    pos: Map | None
    blocks: Repeat
    attn: Attention
    ln1: Map | None
    mlp: Map | None
    ln2: Map | None
    ln_f: Map | None
    unembed: Unembedding
    tied: bool

    refusals: tuple[tuple[str, str], ...] = ()  # (identity, why it fails): structure.py
    parallel: bool = False  # x + A(N_1 x) + M(N_2 x): both branches read the block's input

    @classmethod
    def of(cls, model: Map) -> Anatomy:
        parts = {k: _find(model, p) for k, p in PARTS.items()}
        kinds = dict(embed=Embedding, blocks=Repeat, attn=Attention, unembed=Unembedding)
        for k, kind in kinds.items():
            if not isinstance(parts[k], kind):
                raise ValueError(
                    f"{model.name}: the circuits need a {kind.__name__} named {PARTS[k]!r} "
                    f"(found {parts[k]!r}); build the model with jaxformer.build or use its names"
                )
        pos = parts["pos"]
        if pos is not None and not isinstance(pos, (LearnedPositions, SinusoidalPositions)):
            raise ValueError(f"{model.name}: unknown positional map {pos!r}")
        why, parallel = refusals(model, parts["blocks"], parts)
        tied = any(isinstance(m, Tie) for _, m in maps(model))
        return cls(**parts, tied=tied, refusals=tuple(why.items()), parallel=parallel)

    def require(self, where: str, *identities: str) -> None:
        """Raise, with the reason, if one of ``identities`` ("stream", "logits", "scores":
        ``structure.py``) fails for this model."""
        why = dict(self.refusals)
        for i in identities:
            if i in why:
                raise ValueError(f"{where}: {why[i]}")

    @property
    def L(self) -> int:
        return self.blocks.L

    @property
    def H(self) -> int:
        return self.attn.H


def untied(model: Map, params: Params) -> Params:
    """The full parameters: with a tie, the tied leaf (W_U = W_Eᵀ) filled in."""
    return untie(model, params)[1]


def at_layer(tree: Params, l: int) -> Params:
    """Layer l's slice of stacked block parameters ``{…: [L, …]}``."""
    return jax.tree.map(lambda a: a[l], tree)


def positions(a: Anatomy, params: Params, T: int) -> jax.Array | None:
    """The position vectors added to the stream, P[:T] ([T, d]); ``None`` without any."""
    if isinstance(a.pos, LearnedPositions):
        return params[N.POS]["W_pos"][:T]
    if isinstance(a.pos, SinusoidalPositions):
        return jnp.asarray(sinusoid_table(T, a.pos.d))
    return None


def points_of(model: Map, params: Params, tokens, points: dict | None = None) -> dict:
    """The trace's points for ``tokens`` ([T] ids), traced unless given (pass them to reuse
    one trace across analyses). The ids are validated either way."""
    t = validate_tokens(model, tokens)
    if t.ndim != 1:
        raise ValueError(
            f"the circuits read one sequence: tokens must have shape [T], got {t.shape}; "
            "pass one row, tokens[b]"
        )
    return points if points is not None else _trace(model)(params, jnp.asarray(t))[1]


@functools.cache
def _trace(model: Map):
    return jax.jit(model.trace)


def stream_in(a: Anatomy, points: dict, l: int) -> jax.Array:
    """The residual stream entering block l (from a trace).   [T, d]"""
    if l == 0:
        return points[N.POS] if a.pos is not None else points[N.EMBED]
    last = N.RESID_POST if a.mlp is not None else N.RESID_MID  # a parallel block's sum too
    return points[N.BLOCKS][last][l - 1]
