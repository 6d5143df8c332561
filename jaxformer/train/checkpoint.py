"""What training writes into a run directory (``jaxformer.rundir`` reads it).

``save_run_files`` writes the configs and the tokenizer, then their manifest (process 0
only); checkpoints are ``rundir.Checkpoints``; ``read_run_config`` reads the settings
back as a ``TrainConfig``, verified.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_open
from ..models import Config
from ..rundir import (
    CheckpointError,
    Checkpoints,
    committed_steps,
    complete_steps,
    config_differences,
    seal_run_files,
    verify_checkpoint,
)
from ..rundir_load import load_for_inference, read_configs
from ..tokenizer import Tokenizer
from .config import TrainConfig

__all__ = [
    "CheckpointError", "Checkpoints", "committed_steps", "complete_steps", "config_differences",
    "decay_end", "load_for_inference", "read_run_config", "save_run_config", "save_run_files",
    "verify_checkpoint",
]  # fmt: skip


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON, atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=1)


def save_run_files(run_dir: Path, cfg: TrainConfig, model: Config, tok: Tokenizer) -> None:
    write_json(run_dir / "config.json", {"train": cfg.to_dict(), "model": model.to_dict()})
    tok.save(run_dir / "tokenizer")
    seal_run_files(run_dir)


def save_run_config(run_dir: Path, cfg: TrainConfig, model: Config) -> None:
    """Rewrite config.json (a run continued for more steps), then the manifest."""
    write_json(run_dir / "config.json", {"train": cfg.to_dict(), "model": model.to_dict()})
    seal_run_files(run_dir)


def read_run_config(run_dir: Path) -> tuple[TrainConfig, Config]:
    train, model = read_configs(run_dir)
    try:
        return TrainConfig.from_dict(train), model
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{run_dir}/config.json: {e}; the run cannot be used") from None


def decay_end(run_dir: Path, step: int) -> int | None:
    """The last step of a budgeted WSD run, D + N, as checkpoint ``step`` records it; None
    before its decay is set, or when the checkpoint cannot be read."""
    try:
        ck = Checkpoints(run_dir, read_only=True)
        try:
            s = ck.meta(step).get("schedule") or {}
        finally:
            ck.close()
    except Exception:  # a damaged or foreign checkpoint: --resume says why, later
        return None
    D, N = s.get("decay_start"), s.get("decay_steps")
    return D + N if isinstance(D, int) and isinstance(N, int) else None
