"""Models as composites built from a validated ``Config``: one file per family.

families/<name>.py   the family's defaults, validation and block (registered by name)
family.py            the registry and the ``@family`` decorator
parts.py             the common parts (stem, pre-norm block, head, layers from config)
layout.py            the names of the parts, read by circuits, remat and interop
build.py             build(config) → a ``Model`` carrying its config
"""

from . import families  # registers every family before a Config is made
from .build import Model, block, build
from .config import FIELDS, Config
from .entry import logits, validate_tokens
from .family import FAMILIES, Family, family
from .presets import PRESETS

__all__ = [
    "FAMILIES",
    "FIELDS",
    "PRESETS",
    "Config",
    "Family",
    "Model",
    "block",
    "build",
    "families",
    "family",
    "logits",
    "validate_tokens",
]
