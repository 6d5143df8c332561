"""The training configuration: one validated dataclass, named presets, ``--key value`` overrides.

    cfg = TrainConfig.preset("default", lr=1e-3)      # a preset with overrides, validated
    cfg.model_config(vocab_size)                       # the jaxformer.models.Config it trains

The model's settings are every field of ``models.Config`` (derived, not copied: a
field added there is a setting and a ``--flag`` here), with this library's small
default model; ``vocab_size`` is also the size of the BPE to train. Every value is
checked when the config is made, before any data is read or any function compiled,
and an error names the key, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from ..models import Config

COMPUTE_DTYPES = ("float32", "bfloat16")
SCHEDULES = ("wsd", "cosine")
OPTIMIZERS = ("adamw", "muon")
REMAT_POLICIES = ("none", "full", "dots", "names")

# Keys that may change when a run is resumed: they steer the loop, not the optimisation.
RESUMABLE = frozenset(
    {"max_minutes", "eval_every", "eval_batches", "checkpoint_every", "keep_checkpoints"}
    | {"log_every", "sample_tokens", "temperature", "prompt", "progress"}
    | {"mesh"}  # a checkpoint restores onto any mesh, of any device count
)


# A periodic eval reads a fixed subset of val, spread evenly over it, of at least this many
# tokens (or all of val): with fewer, its noise can hide the trend (or reverse it).
MIN_EVAL_TOKENS = 16_384


class ConfigError(ValueError):
    """A training setting is invalid; the message names it and the fix."""


# The model a run trains by default: small enough for ten minutes on two CPU cores.
# ``context`` is T, the model's context and the training sequence length; ``vocab_size``
# the BPE vocabulary to train (with --tokenizer, the tokenizer's own size is used).
MODEL_DEFAULTS = dict(vocab_size=2048, n_layers=4, d_model=192, n_heads=4, context=128)
_MODEL_HINTS = typing.get_type_hints(Config)
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(Config))
ModelSettings = dataclasses.make_dataclass(
    "ModelSettings",
    [
        (
            f.name,
            _MODEL_HINTS[f.name],
            dataclasses.field(default=MODEL_DEFAULTS.get(f.name, f.default)),
        )
        for f in dataclasses.fields(Config)
    ],
    frozen=True,
)


@dataclass(frozen=True)
class TrainConfig(ModelSettings):
    # -- data ------------------------------------------------------------------------------
    data: str = ""  # a text file or a folder of them; "" = the bundled Shakespeare
    tokenizer: str = ""  # a tokenizer directory to load; "" = train a BPE on the train split
    val_fraction: float = 0.1  # the tail of the text held out for validation
    pack: bool = False  # each file of --data a document, packed (a .jsonl file always is)
    # -- a pretrained start (pretrained.py) --------------------------------------------------
    init_from: str = ""  # an HF directory or a run: its weights, model and tokenizer
    freeze: str = ""  # globs of parameter paths kept fixed, e.g. "embed.*,pos.*"
    lora_rank: int = 0  # > 0: train LoRA adapters of this rank alone (models/lora.py)
    lora_alpha: float = 16.0  # the adapters' scale is lora_alpha / lora_rank
    lora_targets: str = "W_Q,W_V"  # the matrices adapted: names or dotted globs
    # -- optimisation ----------------------------------------------------------------------
    batch_size: int = 32  # sequences per step, over all micro-batches and processes
    micro_batches: int = 1  # gradient accumulation: batch_size / micro_batches at a time
    steps: int = 0  # the length of the run and its LR schedule; 0 = what fits in max_minutes
    decay_steps: int = 0  # the LR schedule's length; 0 = steps (a continued run keeps its own)
    schedule: str = "wsd"  # wsd (warmup, stable, 1 − sqrt decay) | cosine (optim.py)
    decay_share: float = 0.2  # wsd: the decay's share of the run (of its time, when budgeted)
    optimizer: str = "adamw"  # adamw | muon (Muon on the blocks' matrices, AdamW the rest)
    lr: float = 2e-3  # peak learning rate (AdamW's; with muon, of the params Muon leaves)
    muon_lr: float = 0.02  # muon: the matrices' peak rate, on the same schedule as --lr
    min_lr: float = 2e-4  # the schedule decays to this
    warmup_steps: int = 100
    weight_decay: float = 0.1  # on the matrices W_* only
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # global-norm clipping; 0 = off
    compute_dtype: str = "float32"  # "bfloat16": bf16 matmuls, f32 master weights
    remat: str = "none"  # none | full | dots | names
    mesh: str = ""  # the device mesh, e.g. "data=2,fsdp=2,tensor=2"; "" = every device on data
    seed: int = 0
    max_minutes: float = 10.0  # the training time budget (steps and evals); 0 = none
    # -- evaluation, checkpoints, output ---------------------------------------------------
    eval_every: int = 250
    eval_batches: int = 8  # batches per periodic eval (≥ MIN_EVAL_TOKENS); the final: all of val
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    log_every: int = 10  # progress-bar refresh, in steps (metrics are written every step)
    sample_tokens: int = 200
    temperature: float = 0.8  # 0 = greedy
    prompt: str = ""  # "" = the first line of the validation text
    name: str = "default"
    out: str = ""  # "" = runs/<name>
    cache: str = "runs/cache"  # tokenizers and token files, keyed by a hash of their inputs
    progress: bool = True

    def __post_init__(self):
        hints = HINTS
        for f in dataclasses.fields(self):
            v, t = getattr(self, f.name), hints[f.name]
            if base_type(t) is float and isinstance(v, int) and not isinstance(v, bool):
                object.__setattr__(self, f.name, float(v))
            elif not isinstance(v, t) or (base_type(t) is int and isinstance(v, bool)):
                raise ConfigError(f"--{f.name} must be {type_name(t)}, got {v!r}")
        self._check()

    def _check(self):
        def need(ok: bool, key: str, why: str):
            if not ok:
                raise ConfigError(f"--{key} {getattr(self, key)!r}: {why}")

        for k in ("vocab_size", "n_layers", "d_model", "n_heads", "context", "batch_size"):
            need(getattr(self, k) >= 1, k, "must be a positive integer")
        for k in ("micro_batches", "eval_every", "eval_batches"):
            need(getattr(self, k) >= 1, k, "must be a positive integer")
        for k in ("checkpoint_every", "keep_checkpoints", "log_every"):
            need(getattr(self, k) >= 1, k, "must be a positive integer")
        for k in ("steps", "decay_steps", "warmup_steps", "sample_tokens", "seed"):
            need(getattr(self, k) >= 0, k, "must be >= 0")
        need(
            self.seed < 2**32,
            "seed",
            "must be below 2**32 (4294967296): the PRNG key holds 32 bits",
        )
        for k in ("weight_decay", "grad_clip", "max_minutes", "temperature", "min_lr"):
            need(getattr(self, k) >= 0, k, "must be >= 0")
        need(self.lr > 0, "lr", "the learning rate must be positive")
        need(self.muon_lr > 0, "muon_lr", "the learning rate must be positive")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"choose one of {OPTIMIZERS}")
        if self.optimizer == "muon":
            need(
                not self.lora_rank,
                "optimizer",
                "LoRA's adapters are low-rank, not matrices to orthogonalise; use adamw",
            )
        need(self.min_lr <= self.lr, "min_lr", f"must not exceed --lr {self.lr}")
        need(self.schedule in SCHEDULES, "schedule", f"choose one of {SCHEDULES}")
        need(
            0 < self.decay_share < 1,
            "decay_share",
            "the decay's share of the run must lie in (0, 1), e.g. 0.2",
        )
        if self.steps:
            self._check_warmup(need)
        else:
            need(self.max_minutes > 0, "steps", "sizes the run to --max_minutes: set that too")
            need(
                self.schedule == "cosine" or self.decay_steps == 0,
                "decay_steps",
                "a time-budgeted run (--steps 0) starts its decay by the clock; drop "
                "--decay_steps, or give --steps",
            )
        need(0 <= self.beta1 < 1, "beta1", "must lie in [0, 1)")
        need(0 <= self.beta2 < 1, "beta2", "must lie in [0, 1)")
        need(0 < self.val_fraction < 1, "val_fraction", "must lie in (0, 1), e.g. 0.1")
        need(self.vocab_size >= 257, "vocab_size", "a byte-level BPE needs at least 257 tokens")
        need(self.lora_rank >= 0, "lora_rank", "must be >= 0 (0: no adapters)")
        need(self.lora_alpha > 0, "lora_alpha", "must be positive, e.g. 2 × --lora_rank")
        if self.lora_rank:
            need(bool(self.init_from), "lora_rank", "adapts a pretrained model: give --init-from")
            need(not self.freeze, "freeze", "with --lora_rank only the adapters train; drop it")
        need(self.compute_dtype in COMPUTE_DTYPES, "compute_dtype", f"choose {COMPUTE_DTYPES}")
        need(self.remat in REMAT_POLICIES, "remat", f"choose one of {REMAT_POLICIES}")
        need(
            self.batch_size % self.micro_batches == 0,
            "batch_size",
            f"is not divisible by --micro_batches {self.micro_batches}; "
            "choose a batch size that is a multiple of it",
        )
        need(self.name != "" and "/" not in self.name, "name", "must be a plain, non-empty name")
        if self.mesh:
            from ..parallel.mesh import MeshError, parse_mesh

            try:
                parse_mesh(self.mesh)
            except MeshError as e:
                raise ConfigError(str(e)) from None
        self.model_config(self.vocab_size)  # the model's own checks, as config errors

    def _check_warmup(self, need):
        n, key = (self.decay_steps, "decay_steps") if self.decay_steps else (self.steps, "steps")
        if self.schedule == "cosine":
            need(
                self.warmup_steps < n,
                "warmup_steps",
                f"must be less than --{key} {n} (the warm-up is part of the schedule); "
                f"pass e.g. --warmup_steps {n // 10}",
            )
            return
        start = self.fixed_decay[0]
        need(
            self.warmup_steps <= start,
            "warmup_steps",
            f"must be at most {start}, where the decay over the last --decay_share "
            f"{self.decay_share:g} of --{key} {n} starts; pass e.g. --warmup_steps {n // 10}",
        )

    # -- derived -------------------------------------------------------------------------------
    def model_config(self, vocab_size: int) -> Config:
        """The model this run trains, for a tokenizer of ``vocab_size`` ids."""
        fields = {k: getattr(self, k) for k in MODEL_FIELDS} | {"vocab_size": vocab_size}
        try:
            return Config(**fields)
        except ValueError as e:  # name the flags: Config.family → --family
            raise ConfigError(
                f"the model settings are invalid: {e}".replace("Config.", "--")
            ) from None

    @property
    def fixed_decay(self) -> tuple[int, int] | None:
        """WSD's (D, N) for a run of fixed length K (``decay_steps`` or ``steps``): its last
        N = max(1, round(decay_share · K)) steps, from D = K − N; None for a budgeted run."""
        K = self.decay_steps or self.steps
        if not K:
            return None
        N = max(1, round(self.decay_share * K))
        return K - N, N

    @property
    def periodic_eval_batches(self) -> int:
        """Batches per periodic eval: ``eval_batches``, raised to hold MIN_EVAL_TOKENS."""
        tokens = (self.batch_size // self.micro_batches) * self.context
        return max(self.eval_batches, -(-MIN_EVAL_TOKENS // tokens))

    @property
    def run_dir(self) -> Path:
        return Path(self.out or f"runs/{self.name}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config a saved run's dict describes (``upgrade``d: an older run's too)."""
        return cls(**_known(upgrade(d)))

    @classmethod
    def preset(cls, name: str = "default", /, **overrides) -> TrainConfig:
        """The preset ``name`` with ``overrides`` applied, validated."""
        if name not in PRESETS:
            raise ConfigError(f"--preset {name!r}: no such preset; choose one of {list(PRESETS)}")
        return cls(**{"name": name, **PRESETS[name], **_known(overrides)})

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **_known(changes))


def upgrade(d: dict) -> dict:
    """A saved run's settings with the keys added since, set as that run trained: a run
    saved before --schedule existed ran the cosine, one saved before --init-from,
    --freeze and --lora_rank started from its seed and trained every parameter, and one
    saved before --pack read its text as one stream, and one saved before --optimizer
    ran AdamW."""
    old = {"schedule": "cosine", "init_from": "", "freeze": "", "lora_rank": 0, "pack": False}
    old |= {"optimizer": "adamw"}
    return {**old, **d}


def _known(d: dict) -> dict:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - fields)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {unknown}; the settings are: {', '.join(sorted(fields))}"
        )
    return d


# `default` is what `make train` runs: as many steps as fit in 10 minutes of training on
# this machine (measured at startup), with the recipe the ablations in BENCHMARKS.md chose
# (Qwen3's block: RoPE, RMSNorm, QK-norm, SwiGLU, an untied head; Muon on the matrices).
# `tiny` is for tests and smoke runs.
PRESETS: dict[str, dict] = {
    "default": dict(family="qwen3", optimizer="muon", lr=4e-3, min_lr=4e-4),
    "tiny": dict(
        vocab_size=300, n_layers=2, d_model=32, n_heads=2, context=32, batch_size=8,
        steps=40, max_minutes=0.0, warmup_steps=5, lr=3e-3, min_lr=3e-4, eval_every=20,
        eval_batches=2, checkpoint_every=10, sample_tokens=20, log_every=1,
    ),
    # what --init-from DIR starts from (unless --preset is given): HF Trainer's fine-tuning
    # defaults (η 5e-5, no weight decay, β₂ 0.999), decaying to η/10 after a short warmup
    "finetune": dict(
        lr=5e-5, min_lr=5e-6, warmup_steps=10, weight_decay=0.0, beta2=0.999, batch_size=8,
        eval_every=100, checkpoint_every=100,
    ),
    "gpt2-small": dict(
        vocab_size=32768, n_layers=12, d_model=768, n_heads=12, context=1024,
        batch_size=512, micro_batches=16, steps=100_000, max_minutes=0.0, lr=6e-4, min_lr=6e-5,
        warmup_steps=2000, compute_dtype="bfloat16", remat="dots", eval_every=1000,
        checkpoint_every=1000, eval_batches=20,
    ),
}  # fmt: skip


HINTS = typing.get_type_hints(TrainConfig)


def base_type(t):
    """``int`` for ``int`` and for ``int | None``."""
    if isinstance(t, types.UnionType):
        return next(a for a in typing.get_args(t) if a is not type(None))
    return t


def type_name(t) -> str:
    return base_type(t).__name__ + (" or none" if isinstance(t, types.UnionType) else "")


def parse_value(key: str, text: str):
    """The command-line string ``text`` as the type of setting ``key`` ("none" for a
    setting that may be left to the model family's default)."""
    t = HINTS[key]
    if isinstance(t, types.UnionType) and text.lower() == "none":
        return None
    t = base_type(t)
    if t is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"expected true or false, got {text!r}")
    try:
        return t(text)
    except ValueError:
        kind = "a number" if t is float else "an integer" if t is int else t.__name__
        raise ConfigError(f"expected {kind}, got {text!r}") from None
