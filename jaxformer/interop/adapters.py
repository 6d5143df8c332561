"""LoRA adapters on disk: jaxformer's own files, and HF PEFT's.

    save_adapters(dir, adapted, params)    adapter.json + adapter.safetensors (A, B alone)
    load_adapters(dir, model) = (adapted, adapter params)   lora(model, …) as saved
    to_peft(adapted, params, dir)          adapter_config.json + adapter_model.safetensors

``to_peft`` writes what ``peft.PeftModel.from_pretrained(hf_model, dir)`` loads onto the
model ``to_hf`` exports, with the same logits. A PEFT module holds one pair per HF matrix
M ([out, in]): M ← M + s·B_hf A_hf. jaxformer's adapters do not map one to one (GPT-2's
``c_attn`` fuses W_Q, W_K, W_V), so each module's update is computed through the family's
own weight map, which is linear on the matrices:

    ΔM = params_to_hf(θ with every target W = (α/r) A B, every other param 0) − params_to_hf(0)

and factored exactly, ΔM = U Σ Vᵀ (float64 SVD) cut to the rank ρ its sources bound (the sum
of r over the targets that write into M: 2r for c_attn under W_Q and W_V), B_hf = U Σ, A_hf = Vᵀ,
with lora_alpha = ρ (s = 1). Modules of lower rank are padded with zero rows. GPT-2's
``Conv1D`` stores Mᵀ: ``fan_in_fan_out`` says so. Embedding and unembedding adapters
(W_E, W_U) have no PEFT ``Linear`` and are refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np

from ..atomic import atomic_dir, verify_manifest, write_manifest
from ..models import Model
from ..models.lora import ADAPTER, LoRA, at, lora, with_at
from .families import BY_FAMILY
from .safetensors_io import read_safetensors, write_tensors

ADAPTER_JSON, ADAPTER_FILE = "adapter.json", "adapter.safetensors"
PEFT_CONFIG, PEFT_FILE = "adapter_config.json", "adapter_model.safetensors"
FAN_IN_FAN_OUT = ("gpt2",)  # families whose HF matrices are Conv1D ([in, out])
_NO_LINEAR = ("W_E", "W_U", "W_pos")


def save_adapters(path: str | os.PathLike, adapted: LoRA, params) -> None:
    """Write the adapter alone: ``adapter.json`` (rank, alpha, the adapted paths) and
    ``adapter.safetensors`` ("blocks.attn.W_Q.A", …), with their SHA256SUMS; atomically."""
    tensors = {
        f"{t.dotted}.{n}": np.asarray(at(params[ADAPTER], t.path)[n])
        for t in adapted.targets
        for n in ("A", "B")
    }
    spec = {"format": "jaxformer-lora", "version": 1, "rank": adapted.rank,
            "alpha": adapted.alpha, "targets": [t.dotted for t in adapted.targets]}  # fmt: skip
    with atomic_dir(path) as tmp:
        write_tensors(tmp / ADAPTER_FILE, tensors)
        (tmp / ADAPTER_JSON).write_text(json.dumps(spec, indent=1) + "\n")
        write_manifest(tmp)


def load_adapters(path: str | os.PathLike, model) -> tuple[LoRA, dict]:
    """(lora(model, …) as saved, its adapter params {"lora": …}): every file verified, every
    tensor's shape checked against the adapter the model gets."""
    root = Path(path)
    verify_manifest(root)
    try:
        spec = json.loads((root / ADAPTER_JSON).read_text())
        rank, alpha, targets = int(spec["rank"]), float(spec["alpha"]), spec["targets"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{root / ADAPTER_JSON}: unreadable ({e})") from None
    adapted = lora(model, rank=rank, alpha=alpha, targets=tuple(targets))
    if [t.dotted for t in adapted.targets] != targets:
        raise ValueError(f"{root}: its targets {targets} are not this model's matrices")
    tensors = read_safetensors(root / ADAPTER_FILE)
    want = adapted.spec()[ADAPTER]
    out: dict = {}
    for t in adapted.targets:
        node = out
        for k in t.path[:-1]:
            node = node.setdefault(k, {})
        node[t.path[-1]] = {}
        for n in ("A", "B"):
            name, shape = f"{t.dotted}.{n}", at(want, t.path)[n].shape
            a = tensors.pop(name, None)
            if a is None or a.shape != shape:
                got = "missing" if a is None else f"has shape {a.shape}"
                raise ValueError(f"{root}: adapter tensor {name} {got}; expected {shape}")
            node[t.path[-1]][n] = a
    if tensors:
        raise ValueError(f"{root}: tensors {sorted(tensors)[:4]} belong to no target")
    return adapted, {ADAPTER: out}


def to_peft(adapted: LoRA, params, path: str | os.PathLike, base_model: str = "") -> None:
    """Write an HF PEFT LoRA adapter (the module docstring) for the HF model that ``to_hf``
    makes of ``adapted.f`` and its base params; ``base_model``: its name or directory."""
    model = adapted.f
    if not isinstance(model, Model):
        raise ValueError("to_peft: the adapted map is not a model build(config) makes")
    if bad := [t.dotted for t in adapted.targets if t.path[-1] in _NO_LINEAR]:
        raise ValueError(
            f"to_peft: {bad} adapt an embedding, which PEFT's LoRA Linear cannot hold; "
            "adapt the attention and MLP matrices only"
        )
    config = model.config
    family = BY_FAMILY[config.family]
    zero = jax.tree.map(lambda a: np.zeros(a.shape, np.float64), {
        k: v for k, v in params.items() if k != ADAPTER})  # fmt: skip
    origin = family.params_to_hf(zero, config)

    def mapped(targets) -> dict[str, np.ndarray]:
        tree = zero
        for t in targets:
            ab = at(params[ADAPTER], t.path)
            A, B = (np.asarray(ab[n], np.float64) for n in ("A", "B"))
            tree = with_at(tree, t.path, adapted.scale * t.delta(A, B, np))
        return {k: v - origin[k] for k, v in family.params_to_hf(tree, config).items()}

    rank: dict[str, int] = {}  # each module's bound: Σ r over the targets writing to it
    for t in adapted.targets:
        for k, v in mapped([t]).items():
            if np.any(v):
                rank[k] = rank.get(k, 0) + adapted.rank
    rho = max(rank.values())
    deltas = mapped(adapted.targets)
    transposed = config.family in FAN_IN_FAN_OUT
    tensors, modules = {}, []
    for name in sorted(rank):
        M = deltas[name].T if transposed else deltas[name]  # [out, in]
        U, S, Vt = np.linalg.svd(M, full_matrices=False)
        n = min(rank[name], len(S))
        B_hf, A_hf = np.zeros((M.shape[0], rho)), np.zeros((rho, M.shape[1]))
        B_hf[:, :n], A_hf[:n] = U[:, :n] * S[:n], Vt[:n]
        module = name.removesuffix(".weight")
        modules.append(module)
        tensors[f"base_model.model.{module}.lora_A.weight"] = A_hf
        tensors[f"base_model.model.{module}.lora_B.weight"] = B_hf
    peft_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rho, "lora_alpha": rho,
        "target_modules": modules, "fan_in_fan_out": transposed, "lora_dropout": 0.0,
        "bias": "none", "base_model_name_or_path": base_model, "modules_to_save": None,
        "init_lora_weights": True, "use_rslora": False, "use_dora": False,
        "rank_pattern": {}, "alpha_pattern": {},
    }  # fmt: skip
    with atomic_dir(path) as tmp:
        write_tensors(tmp / PEFT_FILE, tensors)
        (tmp / PEFT_CONFIG).write_text(json.dumps(peft_config, indent=2) + "\n")
        write_manifest(tmp)
