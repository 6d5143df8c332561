"""The model configuration: one validated dataclass for both families.

``family="gpt2"``: learned (or sinusoidal) positions, pre-LN LayerNorm, GELU MLP,
biases, tied unembedding. ``family="llama"``: RoPE, RMSNorm, SwiGLU, grouped
query attention, no biases, untied. Fields left ``None`` take the family's default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

FAMILIES = ("gpt2", "llama")
_DEFAULTS = {
    "gpt2": dict(tied=True, bias=True, positional="learned", norm_eps=1e-5),
    "llama": dict(tied=False, bias=False, positional="rope", norm_eps=1e-6),
}


@dataclass(frozen=True)
class Config:
    family: str = "gpt2"
    vocab_size: int = 50257  # V
    context: int = 1024  # the largest T
    n_layers: int = 12  # L
    d_model: int = 768  # d
    n_heads: int = 12  # H
    n_kv_heads: int | None = None  # G (GQA); default H
    d_head: int | None = None  # k; default d / H
    d_mlp: int | None = None  # m; default 4d (gpt2) or 256·⌈(8d/3)/256⌉ (llama)
    activation: str = "gelu_tanh"  # gpt2's φ
    positional: str | None = None  # "learned" | "sinusoidal" (gpt2), "rope" (llama)
    norm_eps: float | None = None
    rope_theta: float = 10000.0
    tied: bool | None = None
    bias: bool | None = None
    attn_only: bool = False  # no MLPs (the circuits papers' toy models)
    final_norm: bool = True
    init_std: float = 0.02

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"Config.family must be one of {FAMILIES}, got {self.family!r}")
        for k, v in _DEFAULTS[self.family].items():
            if getattr(self, k) is None:
                object.__setattr__(self, k, v)
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        for k in ("vocab_size", "context", "n_layers", "d_model", "n_heads", "n_kv_heads"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Config.{k} must be a positive integer, got {v!r}")
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"Config: d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "choose n_heads dividing d_model, or set d_head explicitly"
                )
            object.__setattr__(self, "d_head", self.d_model // self.n_heads)
        if self.d_mlp is None:
            m = (
                4 * self.d_model
                if self.family == "gpt2"
                else -(-8 * self.d_model // 3 // 256) * 256
            )
            object.__setattr__(self, "d_mlp", m)
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"Config: n_heads={self.n_heads} is not a multiple of n_kv_heads="
                f"{self.n_kv_heads}; each key/value head must serve a whole group of query heads"
            )
        allowed = ("learned", "sinusoidal") if self.family == "gpt2" else ("rope",)
        if self.positional not in allowed:
            raise ValueError(
                f"Config.positional={self.positional!r} is not available for family "
                f"{self.family!r}; choose one of {allowed}"
            )
        if self.family == "llama" and self.d_head % 2:
            raise ValueError(f"Config: RoPE needs an even d_head, got {self.d_head}")
        if self.norm_eps <= 0 or self.rope_theta <= 0 or self.init_std <= 0:
            raise ValueError("Config: norm_eps, rope_theta and init_std must be positive")

    def replace(self, **changes) -> Config:
        """A new validated config with ``changes`` applied (unknown keys are an error)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"Config has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Config has no field(s) {sorted(unknown)}")
        return cls(**d)
