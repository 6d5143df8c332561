"""The HF mapping of each family, one file each under the family's name: its config
(``config_from_hf``, ``config_to_hf``) and its weights (``params_from_hf``,
``params_to_hf``), with the HF ``MODEL_TYPE``, ``ARCHITECTURE``, tensor ``PREFIX`` and
the buffers to ``IGNORE``. Every module in this package is one: a new family is its file."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from ...models import Config

MAPPINGS: tuple[ModuleType, ...] = tuple(
    importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
)
MODEL_TYPES = {m.MODEL_TYPE: m for m in MAPPINGS}
BY_FAMILY = {m.FAMILY: m for m in MAPPINGS}


def of_family(family: str, where: str) -> ModuleType:
    """The mapping of jaxformer's ``family``, or an error naming the families that have one."""
    if family not in BY_FAMILY:
        raise ValueError(
            f"{where}: the family {family!r} has no HF mapping; export one of {sorted(BY_FAMILY)}"
        )
    return BY_FAMILY[family]


def config_from_hf(hf: dict, where: str = "config.json") -> Config:
    """The jaxformer ``Config`` of an HF config dict (``config.json``)."""
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        names = ", ".join(f"{t} ({m.ARCHITECTURE})" for t, m in MODEL_TYPES.items())
        raise ValueError(
            f"{where}: model_type={model_type!r} is not supported; jaxformer imports {names}"
        )
    return MODEL_TYPES[model_type].config_from_hf(hf, where)


def config_to_hf(c: Config) -> dict:
    """The HF config dict (``config.json``) of a jaxformer ``Config``; fails naming the field
    for what the family's HF model cannot express exactly."""
    return of_family(c.family, "to_hf").config_to_hf(c)
