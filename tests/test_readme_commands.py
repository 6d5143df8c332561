"""Every ``jaxformer`` command in the README, run against the run the README describes.

``runs/default`` here is the default preset's run (L=4, d=192, H=4, T=128, a 2048-token
BPE), written by the training code itself and stopped two steps before its end, on a
slice of the bundled corpus. The commands run in README order, in-process, from a
workspace holding the files they name. Train commands that start a new run get
``--steps 2`` and a small corpus appended (argparse takes the last value), so that they
end in seconds; the rest run as written. Commands that need 8 devices or several hosts
are listed, and checked to parse and validate.
"""

import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

import jax
import pytest

from jaxformer.cli import main, parser
from jaxformer.models import build
from jaxformer.tokenizer import Tokenizer
from jaxformer.train import TrainConfig
from jaxformer.train.checkpoint import Checkpoints, save_run_files
from jaxformer.train.cli import preset_of
from jaxformer.train.data import bundled_corpus, prepare
from jaxformer.train.optim import optimizer

pytestmark = pytest.mark.slow  # a module fixture of a minute or more

REPO = Path(__file__).resolve().parents[1]

# Train commands that start a new run: bounded to seconds (the last value of a flag wins).
BOUNDED = ["--steps", "2", "--warmup_steps", "0", "--max_minutes", "0", "--progress", "false"]
BOUNDED += ["--data", "corpus.txt", "--eval_every", "1000", "--sample_tokens", "0"]
# Commands for hardware a test does not have: parsed and validated only.
NEEDS = ("--mesh data=8", "--mesh data=2,fsdp", "--mesh data=-1,tensor", "--coordinator",
         "JAX_COORDINATOR", "XLA_FLAGS", "runs/big", "--mesh fsdp", "expert=",
         "--init-from gpt2", "--checkpoint gpt2 ", "runs/tuned")  # fmt: skip
# (the fine-tuning section's commands run for real in test_readme_finetune.py, on a small
# random model saved as the gpt2 directory they name)


def readme_commands() -> list[str]:
    """The ``jaxformer`` command lines of the README's bash blocks, in order."""
    text = (REPO / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if "jaxformer " in line and not line.lstrip().startswith("#"):
                lines.append(line.split("   #")[0].split(" # ")[0].strip())
    return lines


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("readme")
    text = bundled_corpus().read_text()[:150_000]
    (ws / "corpus.txt").write_text(text)
    (ws / "my_texts").mkdir()
    (ws / "my_texts" / "a.txt").write_text(text[:75_000])
    (ws / "my_texts" / "b.txt").write_text(text[75_000:])
    run = ws / "runs" / "default"
    where = dict(out="runs/default", data=str(ws / "corpus.txt"), cache=str(ws / "runs/cache"))
    cfg = TrainConfig.preset("default", steps=252, warmup_steps=25, **where)
    corpus = prepare(cfg, log=lambda s: None)
    mcfg = cfg.model_config(corpus.tokenizer.n_vocab)
    assert (mcfg.n_layers, mcfg.d_model, mcfg.context, mcfg.vocab_size) == (4, 192, 128, 2048)
    save_run_files(run, cfg, mcfg, corpus.tokenizer)
    params = build(mcfg).init(jax.random.key(0))
    meta = {"sampler": {"seed": 0, "step": 250}, "tokenizer_sha256": corpus.tokenizer_sha256}
    meta |= {"train": cfg.to_dict(), "model": mcfg.to_dict()}
    ck = Checkpoints(run)
    ck.save(250, params, optimizer(cfg).init(params), meta)
    ck.wait()
    ck.close()
    return ws


def _run(argv, stdin: bytes = b""):
    out, err = io.StringIO(), io.StringIO()
    old, sys.stdin = sys.stdin, io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def test_the_readme_lists_the_commands_this_test_runs():
    commands = readme_commands()
    assert any(c.startswith("jaxformer sample --checkpoint runs/default") for c in commands)
    assert "jaxformer train --resume --out runs/default" in commands
    assert len(commands) >= 15


@pytest.mark.slow
def test_every_readme_command_runs_on_the_readme_run(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("JAXFORMER_FAULT_AT_STEP", raising=False)
    ran, checked = [], []
    for line in readme_commands():
        stdin = b""
        if "|" in line:  # echo "…" | jaxformer …
            echo, line = line.split("|", 1)
            stdin = (shlex.split(echo)[1] + "\n").encode()
        words = [w.replace("$I", "0") for w in shlex.split(line.strip()) if w != "..."]
        env = [w for w in words if "=" in w and w.split("=")[0].isupper()]
        argv = words[words.index("jaxformer") + 1 :]
        if env or any(n in line for n in NEEDS):
            args = parser().parse_args(argv)  # it parses; its settings validate
            if args.command == "train":
                overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("set_")}
                TrainConfig.preset(preset_of(args.preset, overrides), **overrides)
            checked.append(line)
            continue
        extra = []
        if argv[0] == "train":  # a new run: seconds long; a continued one: two steps more
            extra = ["--steps", "254"] if "--steps" in argv else []
            extra = extra if "--resume" in argv else BOUNDED
        code, out, err = _run(argv + extra, stdin)
        assert code == 0, f"{line}\n{out[-2000:]}\n{err[-2000:]}"
        assert "Traceback" not in err
        ran.append((line, out, err))
    by = {line: (out, err) for line, out, err in ran}
    out, err = by["jaxformer sample --checkpoint runs/default --prompt \"ROMEO:\" "
                  "--max-new-tokens 200 --temperature 0.8"]  # fmt: skip
    n = len(Tokenizer.load(workspace / "runs/default/tokenizer").encode("ROMEO:"))
    assert f"--max-new-tokens 200 clipped to {128 - n}" in err
    assert out.startswith("ROMEO:")
    out, _ = by["jaxformer train --resume --out runs/default"]
    assert "resuming at step 250" in out and "done   step 252/252" in out
    assert len(ran) >= 8 and len(checked) >= 5, (ran, checked)
