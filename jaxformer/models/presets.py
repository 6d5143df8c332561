"""Named model configurations: ``PRESETS["gpt2-small"]`` is GPT-2's 124M model.

A family file may add its own released sizes as a module-level ``PRESETS`` dict; they
are merged here, after every family is registered.

The published ones reproduce their papers' parameter counts exactly:
gpt2-small 124,439,808, gpt2-medium 354,823,168, gpt2-large 774,030,080,
gpt2-xl 1,557,611,200 (tied unembedding), llama2-7b 6,738,415,616.
"""

from __future__ import annotations

from . import families
from .config import Config


def _gpt2(L: int, d: int, H: int) -> Config:
    return Config(family="gpt2", vocab_size=50257, context=1024, n_layers=L, d_model=d, n_heads=H)


PRESETS: dict[str, Config] = {
    "gpt2-small": _gpt2(12, 768, 12),
    "gpt2-medium": _gpt2(24, 1024, 16),
    "gpt2-large": _gpt2(36, 1280, 20),
    "gpt2-xl": _gpt2(48, 1600, 25),
    # LLaMA 2 7B: d_mlp = 256·⌈(8d/3)/256⌉ = 11008 is the family default.
    "llama2-7b": Config(
        family="llama",
        vocab_size=32000,
        context=4096,
        n_layers=32,
        d_model=4096,
        n_heads=32,
        norm_eps=1e-5,
    ),  # fmt: skip
    "llama-tiny": Config(
        family="llama",
        vocab_size=32000,
        context=512,
        n_layers=4,
        d_model=256,
        n_heads=8,
        n_kv_heads=2,
    ),  # fmt: skip
    # ``jaxformer train``'s default model (TrainConfig): a 2048-token BPE on Shakespeare.
    "shakespeare-small": Config(
        family="gpt2", vocab_size=2048, context=256, n_layers=4, d_model=256, n_heads=4
    ),
    # The circuits papers' two-layer attention-only toy model.
    "toy-attn-only": Config(
        family="gpt2",
        vocab_size=50257,
        context=2048,
        n_layers=2,
        d_model=512,
        n_heads=8,
        attn_only=True,
    ),  # fmt: skip
}

for _name in families.__all__:
    PRESETS.update(getattr(getattr(families, _name), "PRESETS", {}))
