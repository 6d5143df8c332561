"""HF transformers checkpoints ↔ jaxformer models.

    model, params = from_hf("gpt2-dir")     # a save_pretrained directory → build(config), params
    logits_TV = model(params, tokens_T)     # the same function as the transformers model
    to_hf(model, params, "out-dir")         # AutoModelForCausalLM.from_pretrained("out-dir")

Supported: GPT-2 (``GPT2LMHeadModel``) and the LLaMA family (``LlamaForCausalLM``:
GQA, tied or untied embeddings, any rope_theta, attention biases). Each family's
config and weight mappings are spelled out in ``families/<name>.py``. Everything is
checked before anything is returned or written: the config, every tensor's shape,
that no tensor is missing or left over, and that every exported weight is finite.
``to_hf`` writes a ``SHA256SUMS`` of the files last; ``from_hf`` verifies a directory
that has one (as ``to_hf`` writes them), naming a damaged file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..atomic import MANIFEST, atomic_dir, verify_manifest, write_manifest
from ..core import Map, is_param
from ..models import Model, build
from ..tokenizer import Tokenizer
from .families import BY_FAMILY, config_from_hf, config_to_hf
from .mapping import Checkpoint
from .safetensors_io import SAFETENSORS, read_tensors, write_tensors
from .tokenizer_json import to_hf_tokenizer_json


def from_hf(path: str | os.PathLike) -> tuple[Map, dict]:
    """Read a transformers ``save_pretrained`` directory: ``(build(config), params)``.

    Params are float32 (bfloat16/float16 checkpoints are widened exactly).
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory; pass a save_pretrained directory")
    if (root / MANIFEST).is_file():  # written by to_hf: every file is checked first
        verify_manifest(root)
    config = config_from_hf(read_config(root), str(root / "config.json"))
    family = BY_FAMILY[config.family]
    ckpt = Checkpoint(read_tensors(root), str(root), family.PREFIX, family.IGNORE)
    params = family.params_from_hf(ckpt, config)
    model = build(config)
    check_params(model, params, str(root))
    return model, jax.tree.map(jnp.asarray, params)


def to_hf(
    model: Map,
    params: dict,
    path: str | os.PathLike,
    *,
    tokenizer: Tokenizer | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``config.json`` + ``model.safetensors`` that transformers' ``from_pretrained``
    loads as the same function (and ``tokenizer.json``, given a ``tokenizer``). ``model``
    must be one that ``jaxformer.models.build`` makes (it carries its config); the
    directory appears whole or not at all."""
    if not isinstance(model, Model):
        raise ValueError(
            f"to_hf: {model.name} is not a model that jaxformer.models.build(Config(...)) makes "
            "(edited or custom composites have no HF counterpart); export build(config)"
        )
    config = model.config
    hf_config = config_to_hf(config)
    check_params(model, params, "to_hf")
    numpy_params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    check_finite(numpy_params, "to_hf")
    tensors = BY_FAMILY[config.family].params_to_hf(numpy_params, config)

    root = Path(path)
    if root.exists() and not (root.is_dir() and not any(root.iterdir()) or overwrite):
        raise FileExistsError(f"{root} exists and is not empty; pass overwrite=True to replace it")
    with atomic_dir(root) as tmp:
        write_tensors(tmp / SAFETENSORS, tensors)
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
        if tokenizer is not None:
            to_hf_tokenizer_json(tokenizer, tmp / "tokenizer.json")
        write_manifest(tmp)  # last


def read_config(root: Path) -> dict:
    f = root / "config.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: missing; a save_pretrained directory has a config.json")
    try:
        hf = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from e
    if not isinstance(hf, dict):
        raise ValueError(f"{f}: expected a JSON object, got {type(hf).__name__}")
    return hf


def check_finite(params: dict, where: str) -> None:
    """Fail, naming the parameter, if any weight is NaN or infinite."""
    for k, a in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not np.isfinite(a).all():
            name = jax.tree_util.keystr(k, simple=True, separator="/")
            raise ValueError(
                f"{where}: parameter {name} holds {int((~np.isfinite(a)).sum())} NaN or infinite "
                "values; such weights are refused (export a checkpoint from before it diverged)"
            )


def check_params(model: Map, params: dict, where: str) -> None:
    """Fail, naming the parameter, unless ``params`` has exactly the shapes of ``model.spec()``."""
    flat = lambda tree, leaf: {
        jax.tree_util.keystr(k, simple=True, separator="/"): v
        for k, v in jax.tree_util.tree_flatten_with_path(tree, is_leaf=leaf)[0]
    }
    want = {k: p.shape for k, p in flat(model.spec(), is_param).items()}
    got = {k: tuple(np.shape(a)) for k, a in flat(params, None).items()}
    if want.keys() != got.keys():
        missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
        raise ValueError(
            f"{where}: params do not fit {model.name}: missing {missing}, extra {extra}"
        )
    for k, shape in want.items():
        if got[k] != shape:
            raise ValueError(f"{where}: parameter {k} has shape {got[k]}, expected {shape}")
