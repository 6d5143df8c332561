"""Training from a pretrained model: ``--init-from DIR``, an HF directory or a jaxformer run.

    θ₀ = the weights of DIR,   τ = DIR's tokenizer,   the model = DIR's ``Config``

in place of θ₀ ~ init(seed), a BPE trained on the corpus and the model of the settings.
The corpus is tokenized with τ (``data.prepare``); the settings take the model fields of
DIR's config (``adopt``), and a model setting given on the command line must agree with
it. Everything else is a run from scratch's: the schedule, the checkpoints, resume (which
reads the run's checkpoint, never DIR's weights again), the evals and the final sample.

``--freeze GLOB,…`` keeps the parameters whose path matches a glob fixed: ``frozen``
labels them, and ``optim.optimizer`` gives them ``set_to_zero`` (no update, no optimizer
state), so AdamW's moments exist only for what trains. Paths are dotted: ``embed.W_E``,
``blocks.attn.W_Q``, ``ln_f.gamma``. In the stacked form a block parameter holds every
layer, so ``blocks.*`` selects all of them.

``--lora_rank r`` (with ``--lora_alpha``, ``--lora_targets``) trains LoRA adapters alone
(``models/lora.py``): the model is ``lora(model, …)``, its base params DIR's weights, its
adapters drawn with B = 0 (so step 0 is DIR's model), and every other param frozen. The
checkpoints hold both; ``rundir_load.load_for_inference`` merges them for sample, eval and
convert, and the run's end writes the adapters alone into ``adapter/``.
"""

from __future__ import annotations

import fnmatch

import jax
import jax.numpy as jnp
import numpy as np

from .. import rundir_load
from ..interop import load_weights, read_model_config
from ..models import Config
from ..models.lora import names
from .config import MODEL_FIELDS, ConfigError, TrainConfig


def adopt(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """``cfg`` with the model settings of ``cfg.init_from``'s config (its config.json alone
    is read). A model setting in ``overrides`` (the command line) that differs from the
    source's is refused, naming both; so is ``--tokenizer`` (the source's is used)."""
    where = f"--init-from {cfg.init_from}"
    if cfg.tokenizer:
        raise ConfigError(
            f"--tokenizer {cfg.tokenizer}: a run {where} uses that model's tokenizer (its ids "
            "are the model's rows); drop --tokenizer"
        )
    try:
        theirs = read_model_config(cfg.init_from).to_dict()
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    clash = [k for k in MODEL_FIELDS if k in overrides and overrides[k] != theirs[k]]
    if clash:
        said = ", ".join(f"--{k} {overrides[k]!r} (it has {theirs[k]!r})" for k in clash)
        raise ConfigError(
            f"{where}: {said}: the model is the pretrained one; drop "
            + " ".join(f"--{k}" for k in clash)
        )
    return cfg.replace(**theirs)


def initial_params(cfg: TrainConfig, config: Config, targets):
    """θ₀: the weights of ``cfg.init_from``, checked against the model trained (``config``)
    and laid out as ``targets`` (abstract params with their shardings) say; on one device
    plain arrays, as ``model.init`` gives."""
    where = f"--init-from {cfg.init_from}"
    try:
        theirs, params = load_weights(cfg.init_from)  # its tokenizer: data.prepare read it
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    if theirs != config:
        raise ConfigError(f"{where}: its model changed since this run was configured; run again")
    targets = {k: targets[k] for k in params}  # the base model's (not LoRA's adapters)
    one = len(jax.tree.leaves(targets)[0].sharding.device_set) == 1

    def place(a, t):
        a = np.asarray(a, t.dtype)
        if one:
            return jnp.asarray(a)
        return jax.make_array_from_callback(t.shape, t.sharding, lambda i: a[i])

    return jax.tree.map(place, params, targets)


def adapted(cfg: TrainConfig, model, mesh):
    """``model``, with LoRA adapters when ``--lora_rank`` is set (one device only, so far)."""
    if not cfg.lora_rank:
        return model
    if mesh.size > 1:
        raise ConfigError(
            f"--lora_rank {cfg.lora_rank}: LoRA trains on one device for now; drop --mesh, "
            "or fine-tune every parameter on the mesh"
        )
    try:
        return rundir_load.adapted(model, cfg.to_dict())  # as inference will rebuild it
    except ValueError as e:
        raise ConfigError(f"--lora_targets {cfg.lora_targets!r}: {e}") from None


def path_of(key_path) -> str:
    """A parameter's dotted path: ``blocks.attn.W_Q``."""
    return jax.tree_util.keystr(key_path, simple=True, separator=".")


def frozen(params_like, freeze: str):
    """The tree of params ↦ "frozen" where the path matches a glob of ``freeze``, else
    "trained" (``optax.multi_transform``'s labels)."""
    patterns = names(freeze)
    return jax.tree_util.tree_map_with_path(
        lambda p, _: "frozen" if any(fnmatch.fnmatchcase(path_of(p), g) for g in patterns)
        else "trained",
        params_like,
    )  # fmt: skip


def check_freeze(freeze: str, params_like) -> None:
    """Refuse a glob that matches no parameter, or globs that leave nothing to train."""
    paths = [path_of(p) for p, _ in jax.tree_util.tree_flatten_with_path(params_like)[0]]
    for g in names(freeze):
        if not any(fnmatch.fnmatchcase(p, g) for p in paths):
            raise ConfigError(
                f"--freeze {g!r} matches no parameter; the parameters are: {', '.join(paths)}"
            )
    if all(v == "frozen" for v in jax.tree.leaves(frozen(params_like, freeze))):
        raise ConfigError(f"--freeze {freeze!r}: freezes every parameter; nothing would train")
