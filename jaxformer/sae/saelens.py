"""SAEs in sae-lens' on-disk format: ``cfg.json`` + ``sae_weights.safetensors``.

    load_saelens(dir)                         → (SAE, params, cfg)
    save_saelens(dir, sae, params, hook_name) a directory ``SAE.load_from_disk`` reads

The weights are sae-lens' names and layout, which are ours: W_enc [d_in, d_sae], b_enc
[d_sae], W_dec [d_sae, d_in], b_dec [d_in], and ``threshold`` [d_sae] for JumpReLU (ours
is its log). The config's ``architecture`` is "standard" (ReLU), "topk" or "jumprelu"; a
config older than sae-lens 6 names it by ``activation_fn`` ("relu", or "topk" with
``activation_fn_kwargs.k``) and its hook ``hook_point``.

What sae-lens computes at inference, and how it is read here:

- ``apply_b_dec_to_input``: whether b_dec is subtracted before encoding (ours too).
- ``normalize_activations`` "none" or "expected_average_only_in" (sae-lens applies no
  run-time scaling for either; the second's factor lives outside the SAE); a run-time
  normalisation ("layer_norm", "constant_norm_rescale", "covariance_whitening") is refused.
- TopK's ``rescale_acts_by_decoder_norm``: pre-activations scaled by ‖W_dec,i‖ and the
  latents divided by it before decoding; folded in exactly, W_enc·diag‖W_dec,i‖,
  b_enc ⊙ ‖W_dec,i‖, unit_rows(W_dec), so the latents are the same.
- JumpReLU gates ReLU(u) by u > θ, which is u · H(u − θ) for θ ≥ 0; θ < 0 is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ..atomic import atomic_dir
from .files import SAEFileError, check_shapes
from .maps import SAE

CONFIG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
ARCHITECTURES = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
NO_RUNTIME_NORM = ("none", "expected_average_only_in", None, False)


def _architecture(cfg: dict, where: Path) -> str:
    arch = cfg.get("architecture")
    if arch is None:  # before sae-lens 6: the activation function names it
        fn = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
        arch = {"relu": "standard", "topk": "topk"}.get(fn, fn)
    if arch not in ARCHITECTURES:
        raise SAEFileError(
            f"{where}: architecture {arch!r} is not supported; jaxformer reads "
            f"{', '.join(ARCHITECTURES)} SAEs"
        )
    return arch


def _k(cfg: dict) -> int:
    return int(cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k"))


def load_saelens(path: str | os.PathLike) -> tuple[SAE, dict, dict]:
    """(the SAE, its params as float32 numpy arrays, the config) of an sae-lens directory."""
    path = Path(path)
    cfg_path, w_path = path / CONFIG, path / WEIGHTS
    for f in (cfg_path, w_path):
        if not f.is_file():
            raise SAEFileError(f"{f} is missing: {path} is not an sae-lens SAE directory")
    try:
        cfg = json.loads(cfg_path.read_text())
        d, n = int(cfg["d_in"]), int(cfg["d_sae"])
    except (ValueError, KeyError, TypeError) as e:
        raise SAEFileError(f"{cfg_path} is unreadable ({e})") from None
    arch = _architecture(cfg, cfg_path)
    norm = cfg.get("normalize_activations", "none")
    if norm not in NO_RUNTIME_NORM:
        raise SAEFileError(
            f"{cfg_path}: normalize_activations {norm!r} normalises at run time, which "
            "jaxformer does not; fold it into the weights first"
        )
    if cfg.get("reshape_activations", "none") not in ("none", None):
        raise SAEFileError(
            f"{cfg_path}: reshape_activations {cfg['reshape_activations']!r} is not supported"
        )
    try:
        raw = {k: np.asarray(v, np.float32) for k, v in st_load(w_path.read_bytes()).items()}
    except (SafetensorError, ValueError) as e:
        raise SAEFileError(f"{w_path} is unreadable ({e})") from None
    names = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if arch == "jumprelu" else [])
    missing = [k for k in names if k not in raw]
    if missing:
        raise SAEFileError(f"{w_path}: no {', '.join(missing)} (it holds {sorted(raw)})")
    params = {k: raw[k] for k in names[:4]}
    k = _k(cfg) if arch == "topk" else 32
    sae = SAE(d, n, ARCHITECTURES[arch], k, bool(cfg.get("apply_b_dec_to_input", True)))
    if arch == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
        norms = np.maximum(np.linalg.norm(params["W_dec"], axis=-1), 1e-8)
        params["W_enc"] = params["W_enc"] * norms[None, :]
        params["b_enc"] = params["b_enc"] * norms
        params["W_dec"] = params["W_dec"] / norms[:, None]
    if arch == "jumprelu":
        theta = raw["threshold"]
        if not np.all(theta >= 0):
            raise SAEFileError(
                f"{w_path}: threshold holds negative values (or NaN); θ ≥ 0 is needed"
            )
        with np.errstate(divide="ignore"):
            params["log_threshold"] = np.log(theta)  # θ = 0 → −inf, and exp(−inf) = 0 again
    check_shapes(sae, params, w_path)
    return sae, params, cfg


def save_saelens(path: str | os.PathLike, sae: SAE, params: dict, hook_name: str = "") -> Path:
    """Write ``path`` (replacing it) as sae-lens 6 writes an SAE (``save_model``)."""
    path = Path(path)
    arch = {v: k for k, v in ARCHITECTURES.items()}[sae.variant]
    w = {k: np.asarray(params[k], np.float32) for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if sae.variant == "jumprelu":
        w["threshold"] = np.exp(np.asarray(params["log_threshold"], np.float32))
    cfg = {
        "architecture": arch, "d_in": sae.d, "d_sae": sae.n, "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"hook_name": hook_name, "sae_lens_version": "6.0.0"},
    }  # fmt: skip
    if sae.variant == "topk":
        cfg |= {"k": sae.k, "rescale_acts_by_decoder_norm": False}
    with atomic_dir(path) as tmp:
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=1))
        (tmp / WEIGHTS).write_bytes(st_save(w))
    return path
