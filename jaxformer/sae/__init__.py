"""Sparse autoencoders on a model's activations (item 4 of issue 16).

maps.py     SAE: R^d → R^d, its encoder R^d → R^n and decoder R^n → R^d; topk, relu,
            jumprelu (straight-through threshold); unit-norm decoder rows
losses.py   mse, L1, L0, FVE, aux-k; each variant's objective
source.py   sites(model), activations(model, params, tokens_BT, at), ce_recovered(...)
buffer.py   the shuffled activation buffer: fixed capacity, refilled by halves
train.py    SAETrainConfig, train(...): Adam, dead latents, checkpoints, metrics, evals
files.py    save / load: safetensors + cfg.json + SHA256SUMS
saelens.py  load_saelens / save_saelens: sae-lens' cfg.json + sae_weights.safetensors
cli.py      `jaxformer sae train`

from jaxformer.sae import load, activations
sae, params, cfg = load("runs/sae/default.blocks.1.resid_post/sae")
z = sae.encode(params, activations(model, model_params, tokens_BT, cfg["hook_name"]))
"""

from .buffer import Buffer
from .files import SAEFileError, load, save
from .maps import SAE, VARIANTS, Decoder, Encoder, unit_rows
from .saelens import load_saelens, save_saelens
from .source import activations, ce_losses, ce_recovered, sites
from .train import SAETrainConfig, evaluate, train

__all__ = [
    "SAE", "VARIANTS", "Buffer", "Decoder", "Encoder", "SAEFileError", "SAETrainConfig",
    "activations", "ce_losses", "ce_recovered", "evaluate", "load", "load_saelens", "save",
    "save_saelens", "sites", "train", "unit_rows",
]  # fmt: skip
