"""Reading and writing the tensors of an HF checkpoint directory, without pickle.

``model.safetensors`` (or shards listed in ``model.safetensors.index.json``) is
read with safetensors. ``pytorch_model.bin`` (or its shards) is read only with
``torch.load(weights_only=True)``, which refuses arbitrary objects; it needs
torch installed. Any format error is re-raised as a ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

SAFETENSORS, BIN = "model.safetensors", "pytorch_model.bin"


def checkpoint_files(root: Path) -> list[Path]:
    """The weight files of a ``save_pretrained`` directory, safetensors first."""
    for name in (SAFETENSORS, BIN):
        if (root / name).is_file():
            return [root / name]
        index = root / f"{name}.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{index}: not a valid index (no weight_map): {e}") from e
            return [root / f for f in sorted(set(weight_map.values()))]
    raise FileNotFoundError(
        f"{root}: no weights found; expected {SAFETENSORS}, {BIN} or a sharded "
        "*.index.json as written by transformers' save_pretrained"
    )


def read_tensors(root: Path) -> dict[str, np.ndarray]:
    """All tensors of the checkpoint in ``root``, by name (shards merged)."""
    tensors: dict[str, np.ndarray] = {}
    for f in checkpoint_files(root):
        part = read_safetensors(f) if f.name.endswith(".safetensors") else _read_torch(f)
        dup = sorted(set(part) & set(tensors))
        if dup:
            raise ValueError(f"{f}: tensor(s) {dup[:5]} also appear in another shard")
        tensors |= part
    return tensors


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shard listed in the index is missing")
    try:
        # The "flax" framework reads bfloat16 as well (numpy has no such dtype).
        with safe_open(path, framework="flax") as f:
            return {k: np.asarray(f.get_tensor(k), np.float32) for k in f.keys()}
    except SafetensorError as e:
        raise ValueError(
            f"{path}: not a valid safetensors file ({e}); the file is corrupt or truncated, "
            "download or save it again"
        ) from e


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shard listed in the index is missing")
    try:
        import torch
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"{path}: reading pytorch_model.bin needs torch (pip install torch); or save the "
            "model with safe_serialization=True to get model.safetensors"
        ) from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(
            f"{path}: cannot be read as a weights-only PyTorch checkpoint ({e}); it is "
            "corrupt, truncated or holds objects other than tensors"
        ) from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict of tensors (a state_dict)")
    return {k: v.detach().float().numpy() for k, v in state.items()}


def write_tensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write ``tensors`` as float32 to the safetensors file ``path`` (its mode follows the
    umask, as every file jaxformer writes)."""
    arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}
    save_file(arrays, path, metadata={"format": "pt"})  # transformers expects format "pt"
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # safetensors makes 0644 whatever the umask
