"""Which run a command means: a new one, one to resume, or one already done.

    resolve(preset, overrides, resume, overwrite) ↦ (cfg, "new" | "resume" | "done")

A run directory without a complete checkpoint starts again, with a note, when its command
is run again (with or without --resume); one with a checkpoint is never trained over
without --overwrite; a new run ``--init-from DIR`` takes DIR's model (``pretrained.adopt``);
``--resume`` takes the saved config with only the fields that may change (``RESUMABLE``)
changed, and a finished run continues with ``--resume --steps N``:
its schedule keeps its length (``decay_steps``), then stays at min_lr.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jax

from ..parallel import barrier
from . import checkpoint as C
from . import pretrained
from .config import RESUMABLE, ConfigError, TrainConfig


def run_dir_of(preset: str, overrides: dict) -> Path:
    """The run directory a command names: ``--out``, else ``runs/<--name or the preset>``."""
    return Path(overrides.get("out") or f"runs/{overrides.get('name') or preset}")


def resolve(
    preset: str, overrides: dict, resume: bool = False, overwrite: bool = False, log=None
) -> tuple[TrainConfig, str]:
    """(the config to run, "new" | "resume" | "done"): the preset with ``overrides`` for a new
    run; on ``resume`` the saved settings with the loop-only changes (or more steps). A run
    directory without a complete checkpoint starts again, with a note; a run with one is
    never trained over unless ``overwrite``; an error names the conflict and the fix."""
    log = log or (say if jax.process_index() == 0 else silent)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one of them")
    run_dir = run_dir_of(preset, overrides)
    _check_writable(run_dir, "--out")
    state, latest = _state(run_dir)
    if state == "foreign":
        raise ConfigError(
            f"--out {run_dir}: the directory holds files but no training run (no config.json); "
            "choose a new or empty --out"
        )
    if resume and state == "started":
        cfg = _resumed(run_dir, overrides, latest)
        length = cfg.steps or C.decay_end(run_dir, latest)
        if length is not None and latest >= length and _intact(run_dir, latest):
            log(
                f"note   {run_dir} finished at step {latest} of {length}: nothing to train; to "
                f"continue it, pass --resume --steps N with N > {length}"
            )
            return cfg, "done"
        return cfg, "resume"
    cfg = TrainConfig.preset(preset, **overrides)  # a new run: every value checked first
    if cfg.init_from:  # the model is the pretrained one (its config.json read and checked)
        cfg = pretrained.adopt(cfg, overrides)
    if state == "unstarted":
        log(
            f"note   {run_dir} holds no complete checkpoint (its last run stopped before the "
            "first): starting it again"
        )
    elif state == "started":
        if not overwrite:
            raise ConfigError(f"{run_dir} already holds {_describe_run(run_dir, latest)}")
    elif resume:
        log(f"note   {run_dir} holds no run yet: starting it")
    if state != "new" and jax.process_index() == 0:
        keep = () if overwrite else ("damaged",)  # a restart keeps what it did not write
        for p in run_dir.iterdir():
            if p.name not in keep:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    barrier("train: run directory checked")  # no process writes before all looked
    return cfg, "new"


def _intact(run_dir: Path, step: int) -> bool:
    try:
        C.verify_checkpoint(run_dir, step)
        return True
    except C.CheckpointError:  # a damaged last checkpoint: resuming falls back, and says so
        return False


def _state(run_dir: Path) -> tuple[str, int | None]:
    """("new" | "foreign" | "unstarted" | "started", the latest complete checkpoint)."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "new", None
    if not any((run_dir / n).exists() for n in _RUN_MARKS):
        return "foreign", None
    steps = C.complete_steps(run_dir) or C.committed_steps(run_dir)  # unsealed: kept too
    return ("started", steps[-1]) if steps else ("unstarted", None)


_RUN_MARKS = ("config.json", "checkpoints", "metrics.jsonl", "damaged")


def _describe_run(run_dir: Path, latest: int) -> str:
    """What is in the way of a new run, and the three ways on."""
    try:
        steps = C.read_run_config(run_dir)[0].steps or C.decay_end(run_dir, latest)
    except C.CheckpointError:
        steps = None
    if steps is not None and latest >= steps:
        return (
            f"a finished run ({steps} steps): pass --resume --steps N (N > {steps}) to train it "
            "further, --overwrite to start it again, or --out DIR for a new run"
        )
    return (
        f"a run stopped at step {latest}" + (f" of {steps}" if steps else "")
        + ": pass --resume to continue it, --overwrite to start it again, or --out DIR for a "
        "new run"
    )  # fmt: skip


def _resumed(run_dir: Path, overrides: dict, latest: int) -> TrainConfig:
    """The saved settings of the run in ``run_dir`` with ``overrides``: loop-only keys may
    change, and ``steps`` may grow (the schedule keeps its length, then stays at min_lr)."""
    saved = C.read_run_config(run_dir)[0]
    changed = {
        k: v for k, v in overrides.items() if k not in ("out", "name") and v != getattr(saved, k)
    }
    steps = changed.pop("steps", None)
    length = saved.steps or C.decay_end(run_dir, latest)  # a budgeted run's: its decay's end
    if conflicts := sorted(set(changed) - RESUMABLE):
        said = "; ".join(
            f"--{k} {changed[k]!r}, but it was trained with {getattr(saved, k)!r}"
            for k in conflicts
        )
        raise ConfigError(
            f"--resume {run_dir}: {said}; a resumed run keeps its settings (it may change only "
            f"the loop's, such as --max_minutes or --eval_every, and extend --steps): drop "
            f"{', '.join('--' + k for k in conflicts)}, or start a new run with --out DIR"
        )
    if steps is not None:
        if length is None:
            raise ConfigError(
                f"--resume --steps {steps}: the run in {run_dir} is sized by its time budget "
                f"and has not started its decay yet (checkpoint at step {latest}): resume it "
                "without --steps, then extend it once it has finished"
            )
        if steps < length:
            raise ConfigError(
                f"--resume --steps {steps}: the run in {run_dir} is {length} steps long "
                f"(checkpoint at step {latest}), and a resumed run can only be extended: pass "
                f"--steps greater than {length}, or drop --steps"
            )
        changed |= {"steps": steps, "decay_steps": saved.decay_steps or length}
    return saved.replace(out=str(run_dir), **changed)


def _check_writable(path: Path, flag: str) -> None:
    """Refuse a path that is a file, or whose nearest existing folder cannot be written."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file, not a directory; choose another {flag}")
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"{flag} {path}: {p} is a file, so no directory can be made there")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{flag} {path}: {p} is not writable (permission denied); choose a writable {flag}"
        )


def say(line: str) -> None:
    print(line, flush=True)  # promptly, also into a pipe or a log file


def silent(line: str) -> None:
    pass
