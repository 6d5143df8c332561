"""GPT-2- and LLaMA-style composites built from a validated ``Config``."""

from .build import block, build
from .config import FAMILIES, Config
from .entry import logits, validate_tokens
from .presets import PRESETS

__all__ = ["FAMILIES", "PRESETS", "Config", "block", "build", "logits", "validate_tokens"]
