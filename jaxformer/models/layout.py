"""The names of a transformer's parts: the one place the layout is spelled.

    U ∘ N_f? ∘ B^L ∘ P? ∘ E,      B = (id + M ∘ N_2)? ∘ (id + A ∘ N_1?)

    E  EMBED      P  POS        B^L  BLOCKS (a Repeat)     N_f  LN_F     U  UNEMBED
    inside a block: N_1 LN1, A ATTN, N_2 LN2, M MLP; the stream after the attention
    write RESID_MID, after the MLP write RESID_POST. A sandwich block (Gemma 2, 3) also
    normalises each write: (id + N_2' ∘ M ∘ N_2) ∘ (id + N_1' ∘ A ∘ N_1), N_1' LN1_POST,
    N_2' LN2_POST

Families build their maps under these names; the circuits, the remat policies and the
interop mappings read them from here, so a family that keeps the names is read by all
of them. ``at(BLOCKS, ATTN)`` is the path ``"blocks.attn"``.
"""

from __future__ import annotations

EMBED, POS, BLOCKS, LN_F, UNEMBED = "embed", "pos", "blocks", "ln_f", "unembed"
LN1, ATTN, LN2, MLP = "ln1", "attn", "ln2", "mlp"
LN1_POST, LN2_POST = "ln1_post", "ln2_post"
RESID_MID, RESID_POST = "resid_mid", "resid_post"


def at(*names: str) -> str:
    """The dotted path of a part: ``at(BLOCKS, ATTN) == "blocks.attn"``."""
    return ".".join(names)
