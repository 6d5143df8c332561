"""A training run's directory, as every capability reads it (sample, describe, convert).

    runs/<name>/
      config.json            {"train": the training settings, "model": models.Config}
      tokenizer/             the tokenizer (Tokenizer.save)
      checkpoints/<step>/    params, opt_state (orbax); meta (JSON: step, sampler state,
                             both configs, the tokenizer's sha256)
      metrics.jsonl, loss.png, sample.txt

It sits below ``train`` (which writes runs), so reading one needs nothing of training.

Orbax writes each step into a temporary directory and renames it when every item is
on disk, so a save that is killed leaves a ``<step>.orbax-checkpoint-tmp-*``
directory that is never listed; a step also counts only when its commit marker is
present. Saves are asynchronous: the arrays are copied to host memory first, so
training continues (and may donate its buffers) while they are written.

Many processes: every process calls ``save`` and ``restore`` with its global (sharded)
arrays; orbax writes each shard once, from the process that holds it, and the JSON
items and the commit from process 0, into a directory all processes see. The arrays
are saved with their global shapes, so ``restore`` reads them onto any mesh: the
targets' shardings say which slices each device reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from .models import Config, build
from .tokenizer import Tokenizer

_MARKER = "_CHECKPOINT_METADATA"  # written last, inside the renamed step directory


class CheckpointError(ValueError):
    """A run directory or checkpoint is missing or incomplete; the message says what to do."""


class Checkpoints:
    """The checkpoints of one run: ``save`` (async, keep the last ``keep``) and ``restore``."""

    def __init__(self, run_dir: str | os.PathLike, keep: int = 2, read_only: bool = False):
        self.dir = Path(run_dir).resolve() / "checkpoints"
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
        )
        self._manager = ocp.CheckpointManager(self.dir, options=options)

    def steps(self) -> list[int]:
        """The complete checkpoints, oldest first."""
        steps = self._manager.all_steps()
        return sorted(s for s in steps if (self.dir / str(s) / _MARKER).is_file())

    def latest(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, params, opt_state, meta: dict) -> None:
        """Start saving ``step`` (every process, with its global arrays); returns once the
        arrays are copied to host memory (a buffer donated later is no longer read)."""
        self._manager.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params),
                opt_state=ocp.args.StandardSave(opt_state),
                meta=ocp.args.JsonSave({"step": step, **meta}),
            ),
            force=True,
        )

    def restore(self, step: int, params_like, opt_state_like=None):
        """(params, opt_state or None, meta) of ``step``. ``*_like`` give the shapes, dtypes
        and shardings to restore onto (arrays, or ``jax.ShapeDtypeStruct``s with shardings,
        e.g. ``parallel.abstract_params``); a leaf without a sharding goes to one device."""
        items = {"params": ocp.args.StandardRestore(_targets(params_like))}
        if opt_state_like is not None:
            items["opt_state"] = ocp.args.StandardRestore(_targets(opt_state_like))
        items["meta"] = ocp.args.JsonRestore()
        r = self._manager.restore(step, args=ocp.args.Composite(**items))
        opt_state = r["opt_state"] if opt_state_like is not None else None
        return r["params"], opt_state, r["meta"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def _targets(tree):
    """Restore targets: each leaf's shape, dtype and sharding (else this process's first device)."""
    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def target(a):
        s = getattr(a, "sharding", None)
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=one if s is None else s)

    return jax.tree.map(target, tree)


def read_configs(run_dir: str | os.PathLike) -> tuple[dict, Config]:
    """(the training settings as saved, a dict; the model's ``Config``) of a run."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} is not a training run (no config.json); "
            "train one with `jaxformer train --out DIR`"
        )
    try:
        d = json.loads(path.read_text())
        return dict(d["train"]), Config.from_dict(d["model"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is unreadable ({e}); the run cannot be used") from None


def load_for_inference(run_dir: str | os.PathLike) -> tuple[Config, dict, Tokenizer]:
    """(model config, params, tokenizer) of the latest complete checkpoint in ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"no run directory {run_dir}; train one with `jaxformer train --out {run_dir}`"
        )
    _, config = read_configs(run_dir)
    try:
        tok = Tokenizer.load(run_dir / "tokenizer")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{run_dir}: cannot load the tokenizer ({e})") from None
    none = CheckpointError(
        f"{run_dir} holds no complete checkpoint; train longer than "
        "--checkpoint_every steps, or resume the run with `jaxformer train --resume`"
    )
    if not (run_dir / "checkpoints").is_dir():
        raise none
    ckpt = Checkpoints(run_dir, read_only=True)
    try:
        step = ckpt.latest()
        if step is None:
            raise none
        like = jax.eval_shape(build(config).init, jax.random.key(0))
        params, _, _ = ckpt.restore(step, like)
    finally:
        ckpt.close()
    return config, params, tok
