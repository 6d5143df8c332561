"""An SAE on disk: safetensors for the arrays, JSON for the map, a manifest; no pickle.

    DIR/cfg.json           {"format": "jaxformer-sae", "version", "d_in", "d_sae",
                            "variant", "k", "hook_name", "apply_b_dec_to_input",
                            "bandwidth", "threshold", "meta": {...}}
    DIR/sae.safetensors    W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in],
                           b_dec [d_in], log_threshold [d_sae] (jumprelu)
    DIR/SHA256SUMS         their sha256, written last

``save`` builds the directory beside DIR and renames it (it appears whole or not at all),
then reads it back and compares every array bit for bit. ``load`` checks the manifest
first: a damaged or missing file is refused by name, never read as wrong numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ..atomic import Damaged, atomic_dir, verify_manifest, write_manifest
from .maps import SAE

FORMAT, VERSION = "jaxformer-sae", 1
CONFIG, WEIGHTS = "cfg.json", "sae.safetensors"


class SAEFileError(ValueError):
    """An SAE directory is missing, damaged or not one; the message names the file."""


def config_of(sae: SAE, hook_name: str = "", meta: dict | None = None) -> dict:
    return {
        "format": FORMAT, "version": VERSION, "d_in": sae.d, "d_sae": sae.n,
        "variant": sae.variant, "k": sae.k, "hook_name": hook_name,
        "apply_b_dec_to_input": sae.apply_b_dec_to_input, "bandwidth": sae.bandwidth,
        "threshold": sae.threshold, "meta": meta or {},
    }  # fmt: skip


def sae_of(cfg: dict) -> SAE:
    return SAE(int(cfg["d_in"]), int(cfg["d_sae"]), cfg["variant"], int(cfg["k"]),
               bool(cfg["apply_b_dec_to_input"]), float(cfg["bandwidth"]),
               float(cfg["threshold"]))  # fmt: skip


def save(path: str | os.PathLike, sae: SAE, params: dict, hook_name: str = "",
         meta: dict | None = None) -> Path:  # fmt: skip
    """Write the SAE to the directory ``path`` (replacing it), read it back, compare."""
    path = Path(path)
    arrays = {k: np.asarray(v, np.float32) for k, v in params.items()}
    want = set(sae.spec())
    if set(arrays) != want:
        raise ValueError(f"params hold {sorted(arrays)}; an SAE of this variant has {sorted(want)}")
    with atomic_dir(path) as tmp:
        (tmp / CONFIG).write_text(json.dumps(config_of(sae, hook_name, meta), indent=1))
        (tmp / WEIGHTS).write_bytes(st_save(arrays, metadata={"format": FORMAT}))
        write_manifest(tmp, [CONFIG, WEIGHTS])
    back_sae, back, _ = load(path)
    if back_sae != sae or any(not np.array_equal(back[k], arrays[k]) for k in arrays):
        raise SAEFileError(f"{path / WEIGHTS}: read back, it differs from what was written")
    return path


def load(path: str | os.PathLike) -> tuple[SAE, dict, dict]:
    """(the SAE, its params as numpy arrays, its config) from a directory ``save`` wrote."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise SAEFileError(f"{path / CONFIG} is missing: {path} is not an SAE that save wrote")
    try:
        verify_manifest(path, [CONFIG, WEIGHTS])
    except Damaged as e:
        raise SAEFileError(f"{e}; the SAE is refused (write it again)") from None
    try:
        cfg = json.loads((path / CONFIG).read_text())
        if cfg.get("format") != FORMAT:
            raise ValueError(f"format {cfg.get('format')!r}, not {FORMAT!r}")
        sae = sae_of(cfg)
    except (ValueError, KeyError, TypeError) as e:
        raise SAEFileError(f"{path / CONFIG} is unreadable ({e})") from None
    try:
        params = dict(st_load((path / WEIGHTS).read_bytes()))
    except (SafetensorError, ValueError) as e:
        raise SAEFileError(f"{path / WEIGHTS} is unreadable ({e})") from None
    check_shapes(sae, params, path / WEIGHTS)
    return sae, params, cfg


def check_shapes(sae: SAE, params: dict, where) -> None:
    """Refuse params whose names or shapes are not the SAE's, naming ``where``."""
    spec = sae.spec()
    if set(params) != set(spec):
        raise SAEFileError(f"{where}: holds {sorted(params)}, expected {sorted(spec)}")
    for k, p in spec.items():
        if tuple(params[k].shape) != p.shape:
            raise SAEFileError(
                f"{where}: {k} has shape {list(params[k].shape)}, expected {list(p.shape)}"
            )
