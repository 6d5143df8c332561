"""The model configuration: one validated dataclass for every family.

Fields left ``None`` take the family's default (``models/families/<name>.py``); the
family then checks what only it knows (which positions it allows, say). Every field
can be set from ``jaxformer train --<field>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .family import family_of

_POSITIVE = ("vocab_size", "context", "n_layers", "d_model", "n_heads", "n_kv_heads")
# Fields only some families compute: set (not None), they must be read by the family, which
# says so by naming them in its defaults; any other family refuses them (never ignores).
READ_BY_FAMILY = (
    "attn_softcap", "logit_softcap", "query_pre_attn_scalar", "global_every", "rope_local_theta",
)  # fmt: skip
# A mixture of experts' fields (``layers/moe.py``): read, as those above, by the families
# that name them in their defaults.
EXPERT_FIELDS = (
    "n_experts", "top_k", "norm_topk", "balance_weight", "z_weight", "capacity_factor",
)  # fmt: skip
# What a field left None is when its family does not say.
FALLBACKS = dict(activation="gelu_tanh", rotary_fraction=1.0, parallel_residual=False)


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
    d_mlp: int | None = None  # m; the family's default (4d for gpt2)
    activation: str | None = None  # the MLP's φ (families with a plain MLP; gelu_tanh)
    positional: str | None = None  # "learned" | "sinusoidal" | "rope"
    norm: str | None = None  # "layernorm" | "rmsnorm"
    norm_eps: float | None = None
    rope_theta: float = 10000.0
    rotary_fraction: float | None = None  # RoPE on the first ⌊fraction·d_head⌋ of a head (1)
    tied: bool | None = None
    bias: bool | None = None  # b_Q, b_K, b_V (and b_O, b_in, b_out unless out_bias says)
    out_bias: bool | None = None  # b_O alone; None: as bias
    qk_norm: str | None = None  # RMSNorm of q, k: "head" (over k) or "all" (over H·k)
    sliding_window: int | None = None  # the query at i sees keys j > i − window
    global_every: int | None = None  # layer l is global (no window) iff (l+1) % global_every == 0
    rope_local_theta: float | None = None  # RoPE base of the windowed (local) layers
    attn_softcap: float | None = None  # attention scores s ↦ c·tanh(s/c)
    logit_softcap: float | None = None  # logits z ↦ c·tanh(z/c)
    query_pre_attn_scalar: float | None = None  # scores scaled by its ^-½ (None: d_head's)
    parallel_residual: bool | None = None  # x + A(N₁x) + M(N₂x), not two residual steps
    n_experts: int | None = None  # E: each MLP a mixture of E experts of width d_mlp
    top_k: int | None = None  # k: the experts each token is routed to
    norm_topk: bool | None = None  # the k gates renormalised to sum to 1
    balance_weight: float | None = None  # the objective's weight of the load-balancing loss
    z_weight: float | None = None  # and of the router z-loss (layers/moe.py)
    # over an expert mesh axis, the rows each device sends each other: ⌈c·N·k/P⌉ (0: no
    # limit, no pair dropped; parallel/experts.py)
    capacity_factor: float | None = None
    attention: str = "auto"  # how attention computes: "dense", "chunked", "blockwise" or "auto"
    attn_only: bool = False  # no MLPs (the circuits papers' toy models)
    final_norm: bool = True
    init_std: float = 0.02

    def __post_init__(self):
        fam = family_of(self.family)
        later = {k: v for k, v in fam.defaults.items() if callable(v)}  # read other fields
        for k, v in fam.defaults.items():
            if k not in later and getattr(self, k) is None:
                self._set(k, v)
        if self.n_kv_heads is None:
            self._set("n_kv_heads", self.n_heads)
        for k in _POSITIVE:
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Config.{k} must be a positive integer, got {v!r}")
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"Config: d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "choose n_heads dividing d_model, or set d_head explicitly"
                )
            self._set("d_head", self.d_model // self.n_heads)
        for k, v in later.items():
            if getattr(self, k) is None:
                self._set(k, v(self))
        for k, v in FALLBACKS.items():
            if getattr(self, k) is None:
                self._set(k, v)
        # None is a value: off, or as bias
        optional = ("out_bias", "qk_norm", "sliding_window", *READ_BY_FAMILY, *EXPERT_FIELDS)
        unset = [
            f.name
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is None and f.name not in optional
        ]
        if unset:
            raise ValueError(f"Config: family {self.family!r} gives no default for {unset}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"Config: n_heads={self.n_heads} is not a multiple of n_kv_heads="
                f"{self.n_kv_heads}; each key/value head must serve a whole group of query heads"
            )
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"Config.norm must be 'layernorm' or 'rmsnorm', got {self.norm!r}")
        if self.norm_eps <= 0 or self.rope_theta <= 0 or self.init_std <= 0:
            raise ValueError("Config: norm_eps, rope_theta and init_std must be positive")
        if not 0 < self.rotary_fraction <= 1 or self.rotary_dim % 2:
            raise ValueError(
                f"Config.rotary_fraction={self.rotary_fraction} must lie in (0, 1] and rotate an "
                f"even number of coordinates (got {self.rotary_dim} of d_head={self.d_head})"
            )
        if self.attention not in ("dense", "chunked", "blockwise", "auto"):
            raise ValueError(
                f"Config.attention must be 'dense', 'chunked', 'blockwise' or 'auto', got "
                f"{self.attention!r}"
            )
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"Config.sliding_window must be ≥ 1, got {self.sliding_window}")
        for k in READ_BY_FAMILY:
            v = getattr(self, k)
            if v is None:
                continue
            if k not in fam.defaults:
                raise ValueError(
                    f"Config.{k}={v!r} is not available for family {self.family!r}; leave it "
                    "None (a family that computes it names it in its defaults)"
                )
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise ValueError(f"Config.{k} must be a positive number or None, got {v!r}")
        if self.global_every is not None and (
            not isinstance(self.global_every, int) or self.sliding_window is None
        ):
            raise ValueError(
                f"Config.global_every={self.global_every!r} needs an integer and a "
                "sliding_window (the local layers' window); set both, or neither"
            )
        self._check_experts(fam)
        fam.check(self)

    def _check_experts(self, fam) -> None:
        """A mixture's fields: named by the family, E ≥ 1, 1 ≤ k ≤ E, weights ≥ 0."""
        for k in EXPERT_FIELDS:
            if getattr(self, k) is not None and k not in fam.defaults:
                raise ValueError(
                    f"Config.{k}={getattr(self, k)!r} is not available for family "
                    f"{self.family!r}, whose MLPs are not mixtures; leave it None, or choose "
                    "a family of experts (mixtral, qwen3_moe)"
                )
        if self.n_experts is None:
            return
        E, k = self.n_experts, self.top_k
        if not isinstance(E, int) or isinstance(E, bool) or E < 1:
            raise ValueError(f"Config.n_experts must be a positive integer, got {E!r}")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= E:
            raise ValueError(f"Config.top_k must be an integer in 1..n_experts={E}, got {k!r}")
        if not isinstance(self.norm_topk, bool):
            raise ValueError(f"Config.norm_topk must be true or false, got {self.norm_topk!r}")
        for w in ("balance_weight", "z_weight", "capacity_factor"):
            v = getattr(self, w)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ValueError(f"Config.{w} must be a number ≥ 0, got {v!r}")

    @property
    def rotary_dim(self) -> int:
        """The coordinates of each head that RoPE rotates: ⌊rotary_fraction · d_head⌋."""
        return int(self.d_head * self.rotary_fraction)

    def _set(self, k: str, v) -> None:
        object.__setattr__(self, k, v)

    def replace(self, **changes) -> Config:
        """A new validated config with ``changes`` applied (unknown keys are an error)."""
        _known(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        return cls(**_known(d))


FIELDS = tuple(f.name for f in dataclasses.fields(Config))


def _known(d: dict) -> dict:
    unknown = set(d) - set(FIELDS)
    if unknown:
        raise ValueError(f"Config has no field(s) {sorted(unknown)}")
    return d
