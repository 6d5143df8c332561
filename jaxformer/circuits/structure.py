"""Which of the circuits' exact identities a composite satisfies, read off its structure.

The circuits rest on three identities, each exact given the traced patterns and norm scales:

    "stream"  the residual stream is the sum of the traced writes: x₀ = E(t) (+ P), and each
              block adds A(N_1 x) and M(N_2 x) as they are, A's as Σ_h A^h N_1(x) W_OV^h + b_O
              (path expansion, direct logit attribution, the OV circuits through W_U)
    "logits"  the logits are affine in the final stream: N_f (frozen) then x W_U + b_U
    "scores"  the scores are the bilinear form q^h k^hᵀ · scale of the stream's sources
              (score_terms, and W_QK read as the scores' form)

A composite's structure decides which hold: the maps of its chain (``U ∘ N_f? ∘ B^L ∘ P? ∘ E``
and nothing else), each block's writes (the last map of each residual branch is the
attention or the MLP, what reads the stream before them a norm), and the fields of its
layers (each one the circuits know how to read, or left at its default). Whatever breaks
an identity is recorded with the reason, and the entries that rest on it refuse with that
reason (``Anatomy.require``), never computing a sum that does not equal the model.
"""

from __future__ import annotations

import dataclasses

from ..core import Compose, Map, Parallel, Pattern, Residual, Wrapper
from ..layers import Attention, Embedding, Unembedding
from ..models import layout as N
from .norms import is_norm

IDENTITIES = ("stream", "logits", "scores")

# The fields each layer's reading in the circuits accounts for; any other field must be
# at its default (a field added to a layer later is refused until the circuits read it).
KNOWN = {
    Embedding: {"V", "d", "context", "std", "name", "scale"},
    Unembedding: {"d", "V", "bias", "std", "name", "softcap"},
    Attention: {
        "d", "H", "k", "G", "causal", "bias", "rope_theta", "std", "out_std", "name",
        "out_bias", "qk_norm", "qk_norm_eps", "rotary_dim", "scale", "softcap", "window",
        "impl", "block",
    },
}  # fmt: skip
NORM_FIELDS = {"d", "eps", "name", "offset", "centered"}


def unwrap(m: Map) -> Map:
    """The map a chain of wrappers (tokenwise, tie, the model) stands for."""
    while isinstance(m, Wrapper):
        m = m.f
    return m


def unknown_fields(m: Map, known: set[str]) -> list[str]:
    """``field=value`` for each dataclass field of ``m`` outside ``known`` not at its default."""
    if not dataclasses.is_dataclass(m):
        return []
    return [
        f"{f.name}={getattr(m, f.name)!r}"
        for f in dataclasses.fields(m)
        if f.name not in known and f.default is not dataclasses.MISSING
        and getattr(m, f.name) != f.default
    ]  # fmt: skip


def _seq(m: Map) -> list[Map]:
    """The maps of a composite, last applied first (as ``compose`` lists them), unwrapped."""
    m = unwrap(m)
    if isinstance(m, Compose):
        return [x for c in m.maps for x in _seq(c)]
    return [m]


def refusals(model: Map, blocks: Map, parts: dict) -> tuple[dict[str, str], bool]:
    """({identity: why it fails}, whether the blocks are parallel) for ``model``."""
    why: dict[str, str] = {}

    def refuse(reason: str, *identities: str) -> None:
        for i in identities or IDENTITIES:
            why.setdefault(i, reason)

    # the chain: U ∘ N_f? ∘ B^L ∘ P? ∘ E, nothing else
    allowed = {N.UNEMBED, N.LN_F, N.BLOCKS, N.POS, N.EMBED}
    for m in _seq(model):
        if m.name not in allowed:
            refuse(
                f"{model.name}: the map {m.name!r} ({type(m).__name__}) is not a part of "
                "U ∘ N_f ∘ B^L ∘ P ∘ E, so the stream and the logits are not the circuits' sums"
            )
    for k in ("embed", "unembed", "attn"):
        bad = unknown_fields(parts[k], KNOWN[type(parts[k])]) if parts[k] is not None else []
        if bad:
            refuse(f"{model.name}: {parts[k].name} has {bad}, which the circuits do not read")
    for k in ("ln1", "ln2", "ln_f"):
        bad = unknown_fields(parts[k], NORM_FIELDS) if parts[k] is not None else []
        if bad:
            refuse(f"{model.name}: the norm {parts[k].name} has {bad}, which freezing ignores")
    unembed, attn = parts["unembed"], parts["attn"]
    if unembed.softcap is not None:
        refuse(
            f"{model.name}: the logits are soft-capped (c · tanh(z / c), c = {unembed.softcap:g}): "
            "not affine in the stream, so no sum of path terms equals them", "logits"
        )  # fmt: skip
    if attn.qk_norm is not None:
        refuse(
            f"{model.name}: with qk_norm={attn.qk_norm!r} the scores normalise q and k, so they "
            "are not a bilinear form of the stream's sources", "scores"
        )  # fmt: skip
    if attn.softcap is not None:
        refuse(
            f"{model.name}: the scores are soft-capped (c = {attn.softcap:g}), not bilinear in "
            "the stream's sources", "scores"
        )  # fmt: skip
    kinds = blocks.kinds if isinstance(blocks, Pattern) else (blocks.f,)
    attns = {unwrap(m) for k in kinds for m in _seq_all(k) if isinstance(unwrap(m), Attention)}
    if len(attns) > 1:
        refuse(
            f"{model.name}: its layers' attentions differ ({len(attns)} kinds: windows or RoPE "
            "bases), and score_terms reads one", "scores"
        )  # fmt: skip
    parallel = False
    for block in kinds:
        residuals = [m for m in _seq_all(block) if isinstance(m, Residual)]
        for r in reversed(residuals):  # in the order they apply: resid_mid first
            f = unwrap(r.f)
            parallel |= isinstance(f, Parallel)
            for write in f.maps if isinstance(f, Parallel) else (f,):
                _check_write(model, r, _seq(write), refuse)
    return why, parallel


def _seq_all(m: Map) -> list[Map]:
    """Every map below ``m`` (wrappers unwrapped), in walk order."""
    out = [m]
    for c in unwrap(m).children():
        out += _seq_all(c)
    return out


def _check_write(model: Map, r: Residual, seq: list[Map], refuse) -> None:
    """A branch of residual ``r`` must write A or M itself, read through norms at most."""
    last, readers = seq[0], seq[1:]
    if last.name not in (N.ATTN, N.MLP):
        post = " (post-norm: x + N(A(x)))" if is_norm(last) else ""
        refuse(
            f"{model.name}: the block writes {last.name}(…) into the stream at {r.name}{post}, "
            "not the attention's or the MLP's output: the stream is not the sum of the traced "
            "writes A(N x), M(N x) that the path expansion and the attribution add up",
            "stream", "scores",
        )  # fmt: skip
    for m in readers:
        if not is_norm(m):
            refuse(
                f"{model.name}: {m.name} ({type(m).__name__}) reads the stream before "
                f"{last.name} and is not a norm the circuits can freeze", "stream", "scores"
            )  # fmt: skip
