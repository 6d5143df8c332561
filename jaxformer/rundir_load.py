"""A training run read for inference: its configs, its latest checkpoint's model and weights.

    read_configs(run)        (the training settings, the model's Config), config.json verified
    load_trained(run)        (Config, the map as trained, its params, tokenizer)
    load_for_inference(run)  (Config, params, tokenizer), a LoRA run's adapters folded in
    load_weights(run)        (Config, params) as load_for_inference, the tokenizer not read

The run directory and its checkpoint store are ``rundir.py``'s; this module reads them,
every file verified, and rebuilds the model the run trained (``adapted``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax

from .core import Map
from .models import Config, build
from .models.lora import LoRA, lora, merge, names
from .rundir import (
    CheckpointError,
    Checkpoints,
    complete_steps,
    config_differences,
    load_tokenizer,
    verify_run_files,
)
from .tokenizer import HFTokenizer, Tokenizer


def read_configs(run_dir: str | os.PathLike) -> tuple[dict, Config]:
    """(the training settings as saved, a dict; the model's ``Config``) of a run, its
    config.json verified against the run's manifest."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} is not a training run (no config.json), nor a Hugging Face model "
            "directory; train one with `jaxformer train --out DIR`, or pass a save_pretrained "
            "directory"
        )
    if is_hf_config(path):
        raise CheckpointError(
            f"{run_dir} is a Hugging Face model directory, not a training run; read it with "
            "jaxformer.interop.load_checkpoint (or from_hf), as sample, eval and convert do"
        )
    verify_run_files(run_dir, ["config.json"])
    try:
        d = json.loads(path.read_text())
        return dict(d["train"]), Config.from_dict(d["model"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is unreadable ({e}); the run cannot be used") from None


def is_hf_config(path: str | os.PathLike) -> bool:
    """Whether the file ``path`` is a Hugging Face config.json (a JSON object naming a
    "model_type"), not a run's (which holds "train" and "model")."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and "model_type" in d and not {"train", "model"} <= d.keys()


def load_for_inference(
    run_dir: str | os.PathLike,
) -> tuple[Config, dict, Tokenizer | HFTokenizer]:
    """(model config, params, tokenizer) of the latest complete checkpoint in ``run_dir``,
    every file verified; a damaged or foreign checkpoint is refused, naming the file. A
    LoRA run's adapters are folded into its base weights (``load_trained`` keeps them)."""
    config, model, params, tok = load_trained(run_dir)
    return config, _merged(model, params), tok


def load_weights(run_dir: str | os.PathLike) -> tuple[Config, dict]:
    """(model config, params) of the latest complete checkpoint, as ``load_for_inference``
    gives them, without parsing the tokenizer (its files are verified all the same)."""
    run_dir = _run_dir(run_dir)
    train, config = read_configs(run_dir)
    verify_run_files(run_dir)
    model, params = _restore_latest(run_dir, train, config)
    return config, _merged(model, params)


def load_trained(
    run_dir: str | os.PathLike,
) -> tuple[Config, Map, dict, Tokenizer | HFTokenizer]:
    """(model config, the map as trained, its params, tokenizer) of the latest complete
    checkpoint: a LoRA run's map is ``lora(build(config), …)`` and its params hold the
    adapters apart."""
    run_dir = _run_dir(run_dir)
    train, config = read_configs(run_dir)
    verify_run_files(run_dir)
    try:
        tok = load_tokenizer(run_dir / "tokenizer")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{run_dir}: cannot load the tokenizer ({e})") from None
    model, params = _restore_latest(run_dir, train, config)
    return config, model, params, tok


def adapted(model, train: dict):
    """``model`` as a run trained it: with its LoRA adapters if ``train`` (the run's saved
    settings) has a ``lora_rank``."""
    if not train.get("lora_rank"):
        return model
    targets = names(train["lora_targets"])
    return lora(model, int(train["lora_rank"]), float(train["lora_alpha"]), targets)


def _run_dir(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` as a Path, refused (saying what to pass) if it is a file or absent."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(
            f"{run_dir} is a file, not a run directory; pass the directory that "
            "`jaxformer train --out DIR` wrote"
        )
    if not run_dir.is_dir():
        raise CheckpointError(
            f"no run directory {run_dir}; train one with `jaxformer train --out {run_dir}`"
        )
    return run_dir


def _restore_latest(run_dir: Path, train: dict, config: Config) -> tuple[Map, dict]:
    """(the map as trained, its params) of the latest complete checkpoint, verified and
    checked against the run's model config."""
    step = (complete_steps(run_dir) or [None])[-1]
    if step is None:
        raise CheckpointError(
            f"{run_dir} holds no complete checkpoint (its run stopped before the first); "
            f"run its `jaxformer train` command again, or train longer than --checkpoint_every"
        )
    ckpt = Checkpoints(run_dir, read_only=True)
    try:
        try:
            ckpt.verify(step)
        except CheckpointError as e:
            raise CheckpointError(
                f"{run_dir}: {e}; nothing is read from it (`jaxformer train --out {run_dir} "
                "--resume` falls back to the newest intact checkpoint)"
            ) from None
        saved = ckpt.meta(step).get("model")
        if saved is not None and (diff := config_differences(saved, config.to_dict())):
            raise CheckpointError(
                f"{run_dir}: checkpoint {step} was saved by another model than config.json "
                f"describes ({'; '.join(diff[:4])}, checkpoint vs config.json); it is refused"
            )
        model = adapted(build(config), train)
        like = jax.eval_shape(model.init, jax.random.key(0))
        params, _, _ = ckpt.restore(step, like, verified=True)
    finally:
        ckpt.close()
    return model, params


def _merged(model, params) -> dict:
    """The params of the plain model: a LoRA map's adapters folded into its base weights."""
    return merge(model, params)[1] if isinstance(model, LoRA) else params
