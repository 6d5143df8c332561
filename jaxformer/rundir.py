"""A training run's directory, as every capability reads it (sample, describe, convert).

    runs/<name>/
      config.json            {"train": the training settings, "model": models.Config}
      tokenizer/             the tokenizer (Tokenizer.save; or HFTokenizer.save, its
                             tokenizer.json alone, in a run `convert --from-hf` wrote)
      SHA256SUMS             the sha256 of config.json and the tokenizer, written last
      checkpoints/<step>/    params, opt_state (orbax); meta (JSON: step, sampler state,
                             both configs, the tokenizer's sha256); SHA256SUMS
      damaged/<step>/        checkpoints found damaged on resume, set aside, never deleted
      metrics.jsonl, loss.png, sample.txt

It sits below ``train`` (which writes runs), so reading one needs nothing of training;
``rundir_load.py`` reads a run for inference (its configs, its latest checkpoint).
``write_run`` writes a run that no training made (an imported model: ``convert --from-hf``);
its "train" settings say where it came from, and its checkpoint has no optimizer state.

Every read is verified. A checkpoint's ``SHA256SUMS`` lists every file orbax wrote but
its own commit bookkeeping; it is written into orbax's temporary directory once all
processes have written their shards, before orbax renames the directory, so a step
directory that orbax lists and that holds a manifest is complete. Reading a checkpoint
checks its files against it, then its configs against the run's, then the array shapes
against the model's: a damaged file, a foreign config or a foreign shape is refused by
name, never restored as wrong numbers.

Orbax writes each step into a temporary directory and renames it when every item is
on disk, so a save that is killed leaves a ``<step>.orbax-checkpoint-tmp*``
directory that is never listed. Saves are asynchronous: the arrays are copied to host
memory first, so training continues (and may donate its buffers) while they are written.

Many processes: every process calls ``save`` and ``restore`` with its global (sharded)
arrays; orbax writes each shard once, from the process that holds it, and the JSON
items, the manifest and the commit from process 0, into a directory all processes see.
The arrays are saved with their global shapes, so ``restore`` reads them onto any mesh:
the targets' shardings say which slices each device reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from .atomic import (
    MANIFEST,
    Damaged,
    atomic_dir,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from .models import Config
from .tokenizer import HFTokenizer, Tokenizer

_MARKER = "_CHECKPOINT_METADATA"  # written by orbax inside the renamed step directory
# What orbax writes or rewrites at its rename, after the manifest: left out of it.
_COMMIT_FILES = (_MARKER, "commit_success.txt")
RUN_FILES = ("config.json", "tokenizer/tokenizer.json", "tokenizer/vocab.tiktoken")
_RANKS = "tokenizer/vocab.tiktoken"  # absent where the run's tokenizer is an HF one


class CheckpointError(ValueError):
    """A run directory or checkpoint is missing, incomplete, damaged or foreign; the
    message names the file and says what to do."""


def complete_steps(run_dir: str | os.PathLike) -> list[int]:
    """The steps of ``run_dir`` whose checkpoint was completely written (committed by orbax,
    sealed by its manifest), oldest first; read from the directory alone."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = (
        int(d.name)
        for d in root.iterdir()
        if d.name.isdigit() and (d / _MARKER).is_file() and (d / MANIFEST).is_file()
    )
    return sorted(done)


def committed_steps(run_dir: str | os.PathLike) -> list[int]:
    """The steps orbax committed in ``run_dir``, sealed or not (one saved by a jaxformer
    older than the manifests is not), oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(
        int(d.name) for d in root.iterdir() if d.name.isdigit() and (d / _MARKER).is_file()
    )


def verify_checkpoint(run_dir: str | os.PathLike, step: int) -> None:
    """Check every file of checkpoint ``step`` of ``run_dir`` against its manifest (and
    orbax's own metadata for being readable); a ``CheckpointError`` names the first bad one."""
    d = Path(run_dir) / "checkpoints" / str(step)
    try:
        verify_manifest(d)
        json.loads((d / _MARKER).read_text())
    except Damaged as e:
        raise CheckpointError(f"checkpoint {step}: {e}") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {step}: {d / _MARKER} is unreadable ({e})") from None


class Checkpoints:
    """The checkpoints of one run: ``save`` (async, keep the last ``keep``), ``verify``,
    ``restore`` (verified) and ``set_aside`` (a damaged one, kept)."""

    def __init__(self, run_dir: str | os.PathLike, keep: int = 2, read_only: bool = False):
        self.run_dir = Path(run_dir).resolve()
        self.dir = self.run_dir / "checkpoints"
        self._sealing: int | None = None
        seal = None if read_only else ocp.AsyncOptions(post_finalization_callback=self._seal)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep,
            save_interval_steps=0 if read_only else 1,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
            async_options=seal,
        )
        with _quiet():  # orbax warns that a read-only directory is read-only
            self._manager = ocp.CheckpointManager(self.dir, options=options)

    def steps(self) -> list[int]:
        """The complete checkpoints, oldest first."""
        listed = set(self._manager.all_steps())
        return [s for s in complete_steps(self.run_dir) if s in listed]

    def latest(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, params, opt_state, meta: dict) -> None:
        """Start saving ``step`` (every process, with its global arrays); returns once the
        arrays are copied to host memory (a buffer donated later is no longer read).
        ``opt_state=None``: no optimizer state (a run for inference only, ``write_run``)."""
        self._manager.wait_until_finished()  # the previous save is sealed before this starts
        self._sealing = step
        items = {"params": ocp.args.StandardSave(params)}
        if opt_state is not None:
            items["opt_state"] = ocp.args.StandardSave(opt_state)
        items["meta"] = ocp.args.JsonSave({"step": step, **meta})
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def _seal(self) -> None:
        # Orbax calls this on process 0 once every process has written its part, before it
        # renames the temporary directory: the manifest lands inside, complete, with the rest.
        tmp = sorted(self.dir.glob(f"{self._sealing}.orbax-checkpoint-tmp*"), key=_mtime)
        if tmp:
            write_manifest(tmp[-1], exclude=_COMMIT_FILES)

    def verify(self, step: int) -> None:
        """Check every file of checkpoint ``step`` against its manifest; a ``CheckpointError``
        names the first damaged one."""
        verify_checkpoint(self.run_dir, step)

    def newest_intact(self) -> tuple[int | None, list[tuple[int, str]]]:
        """(the newest checkpoint that verifies, or None; [(step, why)] of the newer ones
        that do not)."""
        damaged = []
        for step in reversed(self.steps()):
            try:
                self.verify(step)
                return step, damaged
            except CheckpointError as e:
                damaged.append((step, str(e)))
        return None, damaged

    def unsealed(self, after: int = -1) -> list[int]:
        """Steps orbax lists after ``after`` that hold no manifest (never sealed)."""
        done = set(self.steps())
        return [s for s in self._manager.all_steps() if s > after and s not in done]

    def set_aside(self, step: int) -> Path:
        """Move checkpoint ``step`` to ``damaged/<step>`` (``.1``, ``.2``… if taken), where no
        save and no clean-up touches it; the path it went to."""
        self._manager.wait_until_finished()
        target = self.run_dir / "damaged" / str(step)
        n = 0
        while target.exists():
            n += 1
            target = target.with_name(f"{step}.{n}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(self.dir / str(step), target)
        self._manager.reload()
        return target

    def reload(self) -> None:
        """Re-read the step list (after another process moved a checkpoint)."""
        self._manager.reload()

    def meta(self, step: int) -> dict:
        """The JSON item ``meta`` of checkpoint ``step`` (verify first)."""
        r = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return r["meta"]

    def restore(self, step: int, params_like, opt_state_like=None, verified: bool = False):
        """(params, opt_state or None, meta) of ``step``, its files verified first (unless
        ``verify(step)`` just passed: ``verified``). ``*_like``
        give the shapes, dtypes and shardings to restore onto (arrays, or
        ``jax.ShapeDtypeStruct``s with shardings, e.g. ``parallel.abstract_params``); a leaf
        without a sharding goes to one device."""
        if not verified:
            self.verify(step)
        _check_shapes(self.dir / str(step) / "params", params_like, step)
        items = {"params": ocp.args.StandardRestore(_targets(params_like))}
        if opt_state_like is not None:
            _check_shapes(self.dir / str(step) / "opt_state", opt_state_like, step)
            items["opt_state"] = ocp.args.StandardRestore(_targets(opt_state_like))
        items["meta"] = ocp.args.JsonRestore()
        try:
            r = self._manager.restore(step, args=ocp.args.Composite(**items))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {self.dir / str(step)} cannot be restored onto this model "
                f"({str(e).splitlines()[0][:200]}); it belongs to another run"
            ) from None
        opt_state = r["opt_state"] if opt_state_like is not None else None
        return r["params"], opt_state, r["meta"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


@contextlib.contextmanager
def _quiet():
    """Orbax's warnings (absl logging) off for a moment: they are not the user's business."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


def _mtime(p: Path) -> float:
    return p.stat().st_mtime


def _check_shapes(item: Path, like, step: int) -> None:
    """Refuse, naming the arrays, a saved tree whose names or shapes differ from ``like``."""
    try:
        handler = ocp.PyTreeCheckpointHandler()
        saved = handler.metadata(item)
        handler.close()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {step}: {item} is unreadable ({e})") from None
    flat = lambda t: {
        jax.tree_util.keystr(k, simple=True, separator="/"): tuple(a.shape)
        for k, a in jax.tree_util.tree_flatten_with_path(t)[0]
    }
    have, want = flat(saved), flat(like)
    if have == want:
        return
    missing, extra = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
    shapes = [f"{k} {list(have[k])} (this model: {list(want[k])})"
              for k in sorted(want.keys() & have.keys()) if have[k] != want[k]]  # fmt: skip
    parts = ([f"missing {missing[:4]}"] if missing else []) + (
        [f"unexpected {extra[:4]}"] if extra else []
    )
    raise CheckpointError(
        f"checkpoint {step} ({item.name}) does not fit this model: "
        + "; ".join(parts + shapes[:4])
        + "; it was saved by another model configuration"
    )


def _targets(tree):
    """Restore targets: each leaf's shape, dtype and sharding (else this process's first device)."""
    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def target(a):
        s = getattr(a, "sharding", None)
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=one if s is None else s)

    return jax.tree.map(target, tree)


def config_differences(saved: dict, ours: dict, keys=None) -> list[str]:
    """``["key saved (checkpoint) vs ours (config.json)", …]`` for the keys that differ."""
    keys = sorted(set(saved) | set(ours)) if keys is None else keys
    return [f"{k} {saved.get(k)!r} vs {ours.get(k)!r}" for k in keys if saved.get(k) != ours.get(k)]


def seal_run_files(run_dir: str | os.PathLike) -> None:
    """Write the run's ``SHA256SUMS`` over config.json and the tokenizer (written last):
    the ``RUN_FILES`` there are (an HF tokenizer has no vocab.tiktoken)."""
    write_manifest(run_dir, [n for n in RUN_FILES if (Path(run_dir) / n).is_file()])


def verify_run_files(run_dir: str | os.PathLike, names=None) -> None:
    """Check the run files ``names`` against the run's manifest, as a ``CheckpointError``;
    default ``RUN_FILES``, less vocab.tiktoken where the manifest does not list it (a run
    whose tokenizer is an HF one: ``load_tokenizer`` then refuses a jaxformer header)."""
    try:
        if names is None:
            listed = read_manifest(run_dir)
            names = [n for n in RUN_FILES if n != _RANKS or n in listed]
        verify_manifest(run_dir, names)
    except Damaged as e:
        raise CheckpointError(f"{e}; the run cannot be used as it is") from None


def load_tokenizer(path: str | os.PathLike) -> Tokenizer | HFTokenizer:
    """A run's tokenizer directory: a ``Tokenizer`` (vocab.tiktoken + its header), else an
    ``HFTokenizer`` (an HF tokenizer.json alone, as ``write_run`` saves an imported one)."""
    path = Path(path)
    return Tokenizer.load(path) if (path / "vocab.tiktoken").is_file() else Tokenizer.from_hf(path)


def write_run(
    run_dir: str | os.PathLike, config: Config, params, tokenizer, origin: dict,
    overwrite: bool = False,
) -> None:  # fmt: skip
    """Write ``run_dir`` (absent or empty, unless ``overwrite``) as a run holding ``params``
    as checkpoint 0, with no optimizer state, that ``rundir_load.load_for_inference``
    reads; ``origin`` (JSON) is recorded as its "train" settings. The directory appears
    whole or not at all."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not (run_dir.is_dir() and not any(run_dir.iterdir()) or overwrite):
        raise FileExistsError(f"{run_dir} exists and is not empty; pass overwrite=True")
    with atomic_dir(run_dir) as tmp:
        (tmp / "config.json").write_text(
            json.dumps({"train": origin, "model": config.to_dict()}, indent=1)
        )
        tokenizer.save(tmp / "tokenizer")
        seal_run_files(tmp)
        ckpt = Checkpoints(tmp, keep=1)
        try:
            ckpt.save(0, params, None, {"model": config.to_dict(), "origin": origin})
            ckpt.wait()
        finally:
            ckpt.close()
