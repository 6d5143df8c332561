"""Gemma 3 (text): Gemma 2's sandwich block with per-head QK-norm in place of the score
soft-capping (HF's Gemma 3 reads no attn_logit_softcapping), five local layers to each
global one, and a RoPE base per kind.

    B_l = (id + N_2' ∘ M ∘ N_2) ∘ (id + N_1' ∘ A_l ∘ N_1),      E(t)_i = √d · W_E[t_i]
    q^h = R_l(N_Q(x W_Q^h)),  k^h = R_l(N_K(x W_K^g)),  N_Q, N_K: (1 + γ) RMSNorm over k
    A_l^h = softmax(mask_l(q^h k^hᵀ · s^-½)),  s = query_pre_attn_scalar
    local layers: a window of w and RoPE base rope_local_theta (10⁴);  global layers (l + 1
    a multiple of global_every = 6): causal, RoPE base rope_theta (10⁶)

The stack is Gemma 2's ``pattern`` of a local and a global kind (params stacked as
``blocks``, a ring cache of w slots on the local layers): see ``gemma2.py``.
"""

from __future__ import annotations

from ..config import Config
from ..family import family
from . import gemma, gemma2

GEMMA3 = gemma2.GEMMA2 | dict(qk_norm="head", rope_local_theta=None)
del GEMMA3["attn_softcap"]  # refused (not read), as by the families without caps


def check(c: Config) -> None:
    # HF's Gemma 3 attention applies no cap (it keeps attn_logit_softcapping unread)
    gemma2.check(c, "gemma3_text", qk_norm="head", attn_softcap=None)


def block(c: Config, local: bool = False):
    """A global (``local=False``) or local layer of Gemma 3."""
    return gemma2.sandwich(c, gemma2.attention(c, local, qk_norm_offset=1.0))


family("gemma3_text", defaults=GEMMA3, check=check, stem=gemma.stem, head=gemma.head,
       layers=gemma2.layers_of(block))(block)  # fmt: skip


def _gemma3(L, d, H, G, m, V=262144, T=32768):
    return Config(
        "gemma3_text", V, T, L, d, H, G, d_head=256, d_mlp=m, sliding_window=512,
        global_every=6, rope_theta=1e6, rope_local_theta=1e4, query_pre_attn_scalar=256,
    )  # fmt: skip


PRESETS = {  # the config.json of google/gemma-3-1b-pt (999,885,952 parameters)
    "gemma-3-1b": _gemma3(26, 1152, 4, 1, 6912),
    "gemma3-tiny": Config(
        "gemma3_text",
        32000,
        512,
        6,
        256,
        4,
        1,
        d_head=64,
        d_mlp=1024,
        sliding_window=128,
        global_every=6,
        rope_theta=1e6,
        rope_local_theta=1e4,
    ),  # fmt: skip
}
