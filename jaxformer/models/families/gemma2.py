"""Gemma 2: Gemma with sandwich norms, soft-capped scores and logits, and local (windowed)
layers alternating with global ones.

    U ∘ c_f ∘ N_f ∘ B_{L-1} ∘ … ∘ B_0 ∘ E,      E(t)_i = √d · W_E[t_i]
    B_l = (id + N_2' ∘ M ∘ N_2) ∘ (id + N_1' ∘ A_l ∘ N_1)       (each write normalised too)
    A_l^h = softmax(mask_l(cap(q^h k^hᵀ · s^-½))),  s = query_pre_attn_scalar,
    cap(u) = c · tanh(u / c) (c = attn_softcap; c_f = logit_softcap on the logits)
    mask_l: a window of w (sliding_window) on the local layers, causal on the global ones;
    layer l is global iff (l + 1) mod global_every = 0 (2: local, global, local, …)

Every N is Gemma's (1 + γ) RMSNorm, M its GeGLU. The layers are one ``pattern`` of two
kinds, local and global, that differ in their attention's mask (and, in Gemma 3, its RoPE
base) and share the parameter shapes: the params stay stacked as ``blocks`` [L, …], one
scan over L (``lax.switch`` picks the kind), while each kind keeps its own cache, so
a local layer's cache is a ring of w slots, not the generated length.
"""

from __future__ import annotations

from ...core import compose, pattern, residual, tokenwise
from .. import layout as N
from .. import parts
from ..config import Config
from ..family import family
from . import gemma
from .llama import llama_like

# The caps are off unless set (None is "no cap", so it cannot mean "the default"); the
# released models (the presets) cap the scores at 50 and the logits at 30.
GEMMA2 = gemma.GEMMA | dict(
    d_mlp=lambda c: 4 * c.d_model, attn_softcap=None, logit_softcap=None,
    query_pre_attn_scalar=lambda c: c.d_head, global_every=None,
)  # fmt: skip


def sandwich(c: Config, attn):
    """(id + N_2' ∘ M ∘ N_2) ∘ (id + N_1' ∘ A ∘ N_1)."""
    attn_branch = compose(gemma.norm(c, N.LN1_POST), attn, gemma.norm(c, N.LN1))
    mlp_branch = compose(gemma.norm(c, N.LN2_POST), tokenwise(gemma.geglu(c)), gemma.norm(c, N.LN2))
    return compose(
        residual(mlp_branch, name=N.RESID_POST),
        residual(attn_branch, name=N.RESID_MID),
        name="block",
    )


def attention(c: Config, local: bool, **changes):
    """The attention of a local (windowed) or global layer."""
    theta = (c.rope_local_theta or c.rope_theta) if local else c.rope_theta
    return parts.attention(
        c, window=c.sliding_window if local else None, rope_theta=theta,
        scale=c.query_pre_attn_scalar**-0.5, softcap=c.attn_softcap, **changes,
    )  # fmt: skip


def kinds(c: Config) -> tuple[int, ...]:
    """κ(l): 1 (global) iff (l + 1) mod global_every = 0, else 0 (local: the window)."""
    if c.global_every is None:  # one kind: the window (if any) on every layer
        return (0,) * c.n_layers
    return tuple(int((l + 1) % c.global_every == 0) for l in range(c.n_layers))


def layers_of(block):
    def layers(c: Config, remat=None):
        two = (block(c, local=True), block(c, local=False))
        return pattern(two, kinds(c), ("local", "global"), name=N.BLOCKS, remat=remat)

    return layers


def check(c: Config, name: str = "gemma2", **want) -> None:
    if c.d_head % 2:
        raise ValueError(f"Config: RoPE needs an even d_head, got {c.d_head}")
    fields = dict(qk_norm=None, activation="gelu_tanh", out_bias=c.bias, final_norm=True)
    llama_like(c, name, **(fields | want))
    if c.rope_local_theta is not None and c.global_every is None:
        raise ValueError(
            f"Config.rope_local_theta={c.rope_local_theta} needs local and global layers; "
            "set global_every (or leave rope_local_theta None)"
        )


def block(c: Config, local: bool = False):
    """A global (``local=False``) or local layer of Gemma 2."""
    return sandwich(c, attention(c, local))


family("gemma2", defaults=GEMMA2, check=check, stem=gemma.stem, head=gemma.head,
       layers=layers_of(block))(block)  # fmt: skip


def _gemma2(L, d, H, G, m, k=256, s=256):
    return Config(
        "gemma2", 256000, 8192, L, d, H, G, d_head=k, d_mlp=m, sliding_window=4096,
        global_every=2, query_pre_attn_scalar=s, attn_softcap=50.0, logit_softcap=30.0,
    )  # fmt: skip


PRESETS = {  # the config.json of google/gemma-2-2b (2,614,341,888 parameters), gemma-2-9b
    # (9,241,705,984) and gemma-2-27b (27,227,128,320)
    "gemma-2-2b": _gemma2(26, 2304, 8, 4, 9216),
    "gemma-2-9b": _gemma2(42, 3584, 16, 8, 14336),
    "gemma-2-27b": _gemma2(46, 4608, 32, 16, 36864, k=128, s=144),
    "gemma2-tiny": Config(
        "gemma2",
        32000,
        512,
        4,
        256,
        4,
        2,
        d_head=64,
        d_mlp=1024,
        sliding_window=128,
        global_every=2,
        attn_softcap=50.0,
        logit_softcap=30.0,
    ),  # fmt: skip
}
