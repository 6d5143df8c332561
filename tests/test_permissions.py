"""Every file jaxformer writes follows the umask, as ordinary tools' files do: run files,
checkpoints, the token cache, tokenizers, metrics, HF exports (a shared file system's
group can read them, or nobody else can, as the user chose)."""

import os
import stat
from pathlib import Path

import jax
import pytest

from jaxformer.cli import main
from jaxformer.interop import to_hf
from jaxformer.models import build
from jaxformer.train import TrainConfig
from jaxformer.train.checkpoint import Checkpoints, save_run_files
from jaxformer.train.data import bundled_corpus, prepare
from jaxformer.train.optim import optimizer
from jaxformer.train.report import Metrics


def _write_everything(root: Path) -> None:
    (root / "text.txt").write_text(bundled_corpus().read_text()[:20_000])
    cfg = TrainConfig.preset("tiny", data=str(root / "text.txt"), cache=str(root / "cache"))
    corpus = prepare(cfg, log=lambda s: None)
    mcfg = cfg.model_config(corpus.tokenizer.n_vocab)
    params = build(mcfg).init(jax.random.key(0))
    run = root / "run"
    save_run_files(run, cfg, mcfg, corpus.tokenizer)
    ck = Checkpoints(run)
    ck.save(1, params, optimizer(cfg).init(params), {"sampler": {"seed": 0, "step": 1}})
    ck.wait()
    ck.close()
    m = Metrics(run / "metrics.jsonl")
    m.write({"step": 1, "loss": 1.0})
    m.close()
    to_hf(build(mcfg), params, root / "hf", tokenizer=corpus.tokenizer)
    argv = ["tokenizer", "train", "--input", str(root / "text.txt"), "--vocab-size", "270"]
    assert main([*argv, "--out", str(root / "tok")]) == 0


@pytest.mark.parametrize("umask", [0o002, 0o077])
def test_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        _write_everything(tmp_path)
    finally:
        os.umask(old)
    wrong = []
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.name == "text.txt":
                continue  # the test's own
            mode = stat.S_IMODE(p.stat().st_mode)
            want = (0o777 if p.is_dir() else 0o666) & ~umask
            if mode != want:
                wrong.append(f"{p.relative_to(tmp_path)} {oct(mode)} (want {oct(want)})")
    assert not wrong, wrong[:10]
