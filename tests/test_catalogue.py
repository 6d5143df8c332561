"""A catalogue of bad inputs, across every command and public entry point.

Each command case runs ``jaxformer.cli.main(argv)`` in-process and asserts: exit status 2,
one line on stderr, no traceback, the bad value named in it, and nothing on disk changed
(every path, size, mode and mtime of the workspace, before and after). Each library case
asserts the exception type and that its message names the bad value.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import sys
from collections import Counter
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from jaxformer import Config, build, logits
from jaxformer.cli import main
from jaxformer.core import ShapeError, compose
from jaxformer.generate import generate
from jaxformer.interop import from_hf, to_hf
from jaxformer.layers import Attention, Embedding
from jaxformer.rundir import CheckpointError, Checkpoints
from jaxformer.rundir_load import load_for_inference
from jaxformer.tokenizer import Tokenizer
from jaxformer.train import ConfigError, TrainConfig
from jaxformer.train.checkpoint import save_run_files
from jaxformer.train.data import DataError, bundled_corpus, prepare, read_tokens
from jaxformer.train.optim import optimizer

READ_ONLY = "/proc/sys/jaxformer-catalogue"  # not writable, even by root


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)
    path.write_bytes(bytes(data))


def _biggest(root: Path) -> Path:
    return max((f for f in root.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """The workspace every case runs in: a corpus, a tokenizer, runs (intact, damaged, without
    a checkpoint), an HF export (intact, damaged), a built cache, files and folders."""
    ws = tmp_path_factory.mktemp("catalogue")
    text = bundled_corpus().read_text()[:30_000]
    (ws / "text.txt").write_text(text)
    (ws / "empty.txt").write_text("")
    (ws / "bad.bin").write_bytes(b"caf\xe9 \xff\xfe")
    (ws / "file.txt").write_text("a file, not a folder")
    (ws / "emptydir").mkdir()
    (ws / "foreign").mkdir()
    (ws / "foreign" / "notes.md").write_text("not a run")
    (ws / "bad.json").write_text("{not json")
    (ws / "unknown.json").write_text('{"d_modl": 3}')
    (ws / "docs_bad.jsonl").write_text('{"text": "a"}\n{"text": "b"\n')
    (ws / "docs_keys.jsonl").write_text('{"text": "a"}\n{"prompt": "b", "answer": "c"}\n')
    (ws / "docs_empty.jsonl").write_text('{"text": "a"}\n{"prompt": "b", "response": ""}\n')
    (ws / "docs_one.jsonl").write_text('{"text": "only one"}\n')
    cfg = TrainConfig.preset("tiny", data=str(ws / "text.txt"), cache=str(ws / "cache"))
    corpus = prepare(cfg, log=lambda s: None)  # the cache, built once
    tok = corpus.tokenizer
    tok.save(ws / "tok")
    shutil.copytree(ws / "tok", ws / "tok_damaged")
    _garble(ws / "tok_damaged" / "vocab.tiktoken")
    mcfg = cfg.model_config(tok.n_vocab)
    params = build(mcfg).init(jax.random.key(0))
    run = ws / "run"
    save_run_files(run, cfg.replace(out=str(run), steps=40), mcfg, tok)
    ck = Checkpoints(run)
    meta = {"sampler": {"seed": 0, "step": 10}, "tokenizer_sha256": corpus.tokenizer_sha256}
    meta |= {"train": cfg.replace(steps=40).to_dict(), "model": mcfg.to_dict()}
    ck.save(10, params, optimizer(cfg).init(params), meta)
    ck.wait()
    ck.close()
    shutil.copytree(run, ws / "run_damaged")
    _garble(_biggest(ws / "run_damaged" / "checkpoints" / "10" / "params"))
    shutil.copytree(run, ws / "run_config_edited")
    cj = ws / "run_config_edited" / "config.json"
    cj.write_text(cj.read_text().replace('"lr": 0.003', '"lr": 0.03'))
    shutil.copytree(run, ws / "run_truncated")  # its orbax metadata cut in half
    marker = ws / "run_truncated" / "checkpoints" / "10" / "_CHECKPOINT_METADATA"
    marker.write_bytes(marker.read_bytes()[: marker.stat().st_size // 2])
    save_run_files(ws / "run_nockpt", cfg, mcfg, tok)
    to_hf(build(mcfg), params, ws / "hf", tokenizer=tok)
    shutil.copytree(ws / "hf", ws / "hf_damaged")
    _garble(ws / "hf_damaged" / "model.safetensors")
    return ws


def snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mode, st.st_mtime_ns)
    return out


# -- the commands ------------------------------------------------------------------------
TRAIN = "train --preset tiny --data {ws}/text.txt --cache {ws}/cache --progress false"
CLI = [
    # jaxformer itself
    ("jaxformer", "", ["COMMAND"]),
    ("jaxformer", "nope", ["'nope'"]),
    ("jaxformer", "trian --steps 3", ["'trian'", "train"]),
    # train: values
    ("train", TRAIN + " --lr fast", ["--lr", "'fast'"]),
    ("train", TRAIN + " --lr -1", ["--lr -1.0"]),
    ("train", TRAIN + " --steps 1.5", ["--steps", "'1.5'"]),
    ("train", TRAIN + " --steps -3", ["--steps -3"]),
    ("train", TRAIN + " --warmup_steps -1", ["--warmup_steps -1"]),
    ("train", TRAIN + " --eval_every 0", ["--eval_every 0"]),
    ("train", TRAIN + " --progress maybe", ["'maybe'"]),
    ("train", "train --preset nope", ["'nope'", "tiny"]),
    ("train", TRAIN + " --max-minuts 3", ["--max-minuts", "did you mean --max_minutes"]),
    ("train", TRAIN + " --no_such_key 1", ["--no_such_key"]),
    ("train", TRAIN + " --batch_size 6 --micro_batches 4", ["--batch_size 6", "4"]),
    ("train", TRAIN + " --seed 99999999999999", ["--seed 99999999999999", "2**32"]),
    ("train", TRAIN + " --steps 5", ["--warmup_steps 5", "--steps 5"]),
    ("train", "train --steps 50", ["--warmup_steps 100", "--steps 50"]),  # the default preset
    ("train", TRAIN + " --name foo/bar", ["'foo/bar'"]),
    ("train", TRAIN + " --family bert", ["'bert'", "gpt2"]),
    ("train", TRAIN + " --remat some", ["'some'"]),
    ("train", TRAIN + " --compute_dtype float16", ["'float16'"]),
    ("train", TRAIN + " --val_fraction 1.5", ["--val_fraction 1.5"]),
    ("train", TRAIN + " --data {ws}/docs_bad.jsonl", ["docs_bad.jsonl, line 2", "not JSON"]),
    ("train", TRAIN + " --data {ws}/docs_keys.jsonl", ["line 2", "'answer'"]),
    ("train", TRAIN + " --data {ws}/docs_empty.jsonl", ["line 2", "response is empty"]),
    ("train", TRAIN + " --data {ws}/docs_one.jsonl", ["1 document", "at least two"]),
    ("train", TRAIN + " --vocab_size 100", ["--vocab_size 100", "257"]),
    ("train", TRAIN + " --d_model 100 --n_heads 3", ["d_model=100", "n_heads=3"]),
    ("train", TRAIN + " --mesh data=2,pipe=2", ["'pipe'"]),
    ("train", TRAIN + " --mesh data=x", ["data=x"]),
    ("train", TRAIN + " --mesh tensor=3 --out {ws}/new", ["tensor=3"]),
    ("train", TRAIN + " --coordinator nohost --num-processes 2 --process-id 0", ["nohost"]),
    ("train", TRAIN + " --num-processes 2", ["--coordinator"]),
    # train: paths and runs
    ("train", TRAIN + " --out {ws}/file.txt", ["{ws}/file.txt", "is a file"]),
    ("train", TRAIN + " --out {ws}/file.txt/run", ["{ws}/file.txt", "is a file"]),
    ("train", TRAIN + " --out " + READ_ONLY, ["/proc/sys", "not writable"]),
    ("train", TRAIN + " --out {ws}/foreign", ["{ws}/foreign", "no training run"]),
    ("train", TRAIN + " --out {ws}/run", ["{ws}/run", "--resume", "--overwrite"]),
    ("train", TRAIN + " --out {ws}/run --resume --overwrite", ["--resume and --overwrite"]),
    ("train", TRAIN + " --out {ws}/run --resume --d_model 64", ["--d_model 64", "32"]),
    ("train", TRAIN + " --out {ws}/run --resume --lr 0.1", ["--lr 0.1", "0.003"]),
    ("train", TRAIN + " --out {ws}/run --resume --steps 20", ["--steps 20", "40 steps long"]),
    ("train", "train --out {ws}/run --resume --steps 20", ["--steps 20", "40 steps long"]),
    ("train", TRAIN + " --out {ws}/run_config_edited --resume", ["config.json", "damaged"]),
    ("train", TRAIN + " --out {ws}/run_damaged --resume", ["is intact", "DAMAGED"]),
    ("train", TRAIN + " --out {ws}/run_truncated --resume", ["_CHECKPOINT_METADATA"]),
    ("train", TRAIN + " --out {ws}/new --data {ws}/missing.txt", ["{ws}/missing.txt"]),
    ("train", TRAIN + " --out {ws}/new --data {ws}/bad.bin", ["bad.bin", "UTF-8"]),
    ("train", TRAIN + " --out {ws}/new --data {ws}/emptydir", ["{ws}/emptydir", "no files"]),
    ("train", TRAIN + " --out {ws}/new --data {ws}/empty.txt", ["empty.txt", "empty"]),
    ("train", TRAIN + " --out {ws}/new --tokenizer {ws}/missing", ["{ws}/missing"]),
    ("train", TRAIN + " --out {ws}/new --tokenizer {ws}/tok_damaged", ["vocab.tiktoken"]),
    ("train", TRAIN + " --out {ws}/new --cache {ws}/file.txt", ["--cache", "file.txt"]),
    ("train", TRAIN + " --out {ws}/new --cache " + READ_ONLY, ["--cache", "/proc/sys"]),
    ("train", TRAIN + " --out {ws}/new --context 10000", ["--context 10000"]),
    # sample
    ("sample", "sample --checkpoint {ws}/run", ["--prompt"]),
    ("sample", "sample --checkpoint {ws}/run --prompt ''", ["--prompt is empty"]),
    ("sample", "sample --checkpoint {ws}/missing --prompt hi", ["{ws}/missing"]),
    ("sample", "sample --checkpoint {ws}/file.txt --prompt hi", ["{ws}/file.txt"]),
    ("sample", "sample --checkpoint {ws}/emptydir --prompt hi", ["{ws}/emptydir"]),
    ("sample", "sample --checkpoint {ws}/run_nockpt --prompt hi", ["no complete checkpoint"]),
    ("sample", "sample --checkpoint {ws}/run_damaged --prompt hi", ["DAMAGED"]),
    ("sample", "sample --checkpoint {ws}/run_config_edited --prompt hi", ["config.json"]),
    ("sample", "sample --checkpoint {ws}/run_truncated --prompt hi", ["_CHECKPOINT_METADATA"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --temperature -1", ["-1.0"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --temperature nan", ["nan"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --top-p 0", ["top_p", "0.0"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --top-k 0", ["top_k", "got 0"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --top-k 100000", ["100000"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --max-new-tokens 0", ["tokens 0"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --max-new-tokens x", ["'x'"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --max_new_tokens y", ["'y'"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --seed -1", ["--seed -1"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --seed 2199023255552", ["2199023255552"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --errors bogus", ["'bogus'"]),
    ("sample", "sample --checkpoint {ws}/run --prompt hi --weights fp8", ["'fp8'", "'int8'"]),
    ("sample", "sample --checkpoint {ws}/run --prompt 'a<|endoftext|>'", ["<|endoftext|>"]),
    ("sample", "sample --checkpoint {ws}/run --prompt '" + "to be " * 40 + "'", ["no room"]),
    ("sample", ["sample", "--checkpoint", "{ws}/run", "--prompt", "caf\udce9"], ["UTF-8"]),
    # tokenizer train
    (
        "tokenizer",
        "tokenizer train --input {ws}/text.txt --vocab-size 10 --out {ws}/t2",
        ["vocab_size=10"],
    ),
    (
        "tokenizer",
        "tokenizer train --input {ws}/text.txt --vocab-size abc --out {ws}/t2",
        ["'abc'"],
    ),
    ("tokenizer", "tokenizer train --input {ws}/text.txt --out {ws}/t2", ["--vocab-size"]),
    (
        "tokenizer",
        "tokenizer train --input {ws}/nope.txt --vocab-size 300 --out {ws}/t2",
        ["{ws}/nope.txt"],
    ),
    (
        "tokenizer",
        "tokenizer train --input {ws}/bad.bin --vocab-size 300 --out {ws}/t2",
        ["bad.bin", "UTF-8"],
    ),
    (
        "tokenizer",
        "tokenizer train --input {ws}/emptydir --vocab-size 300 --out {ws}/t2",
        ["{ws}/emptydir"],
    ),
    (
        "tokenizer",
        "tokenizer train --input {ws}/text.txt --vocab-size 300 --out {ws}/tok",
        ["{ws}/tok", "--overwrite"],
    ),
    (
        "tokenizer",
        "tokenizer train --input {ws}/text.txt --vocab-size 300 --out {ws}/file.txt",
        ["{ws}/file.txt"],
    ),
    (
        "tokenizer",
        "tokenizer train --input {ws}/text.txt --vocab-size 300 --out {ws}/t2 --pattern [a-z]+",
        ["'[a-z]+'", "drops text"],
    ),
    (
        "tokenizer",
        "tokenizer train --input {ws}/text.txt --vocab-size 300 --out {ws}/t2 --pattern '('",
        ["'('"],
    ),
    (
        "tokenizer",
        "tokenizer train --input {ws}/text.txt --vocab-size 300 --out {ws}/t2 --processes 0",
        ["processes", "got 0"],
    ),
    (
        "tokenizer",
        "tokenizer train --input {ws}/text.txt --vocab-size 300 --out {ws}/t2 --special ''",
        ["['']"],
    ),
    # tokenizer encode / decode
    ("tokenizer", "tokenizer encode --tokenizer {ws}/missing --text hi", ["{ws}/missing"]),
    ("tokenizer", "tokenizer encode --tokenizer {ws}/tok_damaged --text hi", ["vocab.tiktoken"]),
    ("tokenizer", "tokenizer encode --tokenizer {ws}/text.txt --text hi", ["text.txt"]),
    ("tokenizer", "tokenizer encode --tokenizer {ws}/emptydir --text hi", ["{ws}/emptydir"]),
    (
        "tokenizer",
        "tokenizer encode --tokenizer {ws}/tok --text 'a<|endoftext|>'",
        ["<|endoftext|>", "--allow-special"],
    ),
    ("tokenizer", "tokenizer encode --tokenizer {ws}/tok", ["stdin", "\\xff"], b"ok \xff"),
    (
        "tokenizer",
        ["tokenizer", "encode", "--tokenizer", "{ws}/tok", "--text", "a\udcff"],
        ["--text", "UTF-8"],
    ),
    ("tokenizer", "tokenizer encode --tokenizer {ws}/tok --errors bogus", ["'bogus'"]),
    ("tokenizer", "tokenizer encode --text hi", ["--tokenizer"]),
    ("tokenizer", "tokenizer decode --tokenizer {ws}/tok 6x4", ["'6x4'"]),
    ("tokenizer", "tokenizer decode --tokenizer {ws}/tok 1 99999", ["99999"]),
    ("tokenizer", "tokenizer decode --tokenizer {ws}/tok -- -1", ["-1"]),
    ("tokenizer", "tokenizer nope", ["'nope'"]),
    # describe
    ("describe", "describe nope", ["'nope'"]),
    ("describe", "describe {ws}/bad.json", ["bad.json"]),
    ("describe", "describe {ws}/unknown.json", ["d_modl"]),
    ("describe", "describe gpt2-small -T 0", ["got 0"]),
    ("describe", "describe gpt2-small -T 99999", ["T=99999"]),
    ("describe", "describe gpt2-small --standalone", ["--standalone"]),
    ("describe", "describe gpt2-small --format pdf", ["'pdf'"]),
    ("describe", "describe {ws}/run_config_edited", ["config.json", "damaged"]),
    ("describe", "describe {ws}/emptydir", ["{ws}/emptydir"]),
    # convert
    ("convert", "convert --to-hf {ws}/missing --out {ws}/hf2", ["{ws}/missing"]),
    ("convert", "convert --to-hf {ws}/run --out {ws}/hf", ["{ws}/hf", "--overwrite"]),
    ("convert", "convert --to-hf {ws}/run --out {ws}/file.txt", ["{ws}/file.txt"]),
    ("convert", "convert --to-hf {ws}/run_damaged --out {ws}/hf2", ["DAMAGED"]),
    ("convert", "convert --to-hf {ws}/emptydir --out {ws}/hf2", ["{ws}/emptydir"]),
    ("convert", "convert --to-hf {ws}/run_truncated --out {ws}/hf2", ["_CHECKPOINT_METADATA"]),
    ("convert", "convert --to-hf {ws}/run", ["--out"]),
]


def _argv(case, ws: Path) -> list[str]:
    argv = shlex.split(case) if isinstance(case, str) else list(case)
    return [a.replace("{ws}", str(ws)) for a in argv]


def run_cli(argv: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    fake_stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    old = sys.stdin
    sys.stdin = fake_stdin
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse
                code = e.code
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", CLI, ids=[f"{c[0]}:{i}" for i, c in enumerate(CLI)])
def test_a_command_refuses_bad_input_in_one_line(ws, case):
    argv = _argv(case[1], ws)
    stdin = case[3] if len(case) > 3 else b""
    before = snapshot(ws)
    code, out, err = run_cli(argv, stdin)
    after = snapshot(ws)
    assert code == 2, (argv, out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert len(err.strip().splitlines()) == 1, err
    for want in case[2]:
        if want == "DAMAGED":  # the garbled array file, by name
            want = _biggest(ws / "run_damaged" / "checkpoints" / "10" / "params").name
        assert want.replace("{ws}", str(ws)) in err, (want, err)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, f"{argv} changed {sorted(changed)[:5]}"
    assert not Path(READ_ONLY).exists()


# -- the library ---------------------------------------------------------------------------
V, T = 64, 16
CFG = Config(vocab_size=V, context=T, n_layers=1, d_model=16, n_heads=2)


@pytest.fixture(scope="module")
def lib(ws):
    model = build(CFG)
    params = model.init(jax.random.key(0))
    return dict(model=model, params=params, tok=Tokenizer.load(ws / "tok"), ws=ws)


def _nan(params):
    return jax.tree.map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan), params)


API = [
    # Tokenizer
    ("Tokenizer.train", lambda e: Tokenizer.train("ab " * 9, 10), ValueError, ["vocab_size=10"]),
    ("Tokenizer.train", lambda e: Tokenizer.train("ab " * 9, 300.0), TypeError, ["float"]),
    ("Tokenizer.train", lambda e: Tokenizer.train(b"ab", 300), TypeError, ["bytes"]),
    (
        "Tokenizer.train",
        lambda e: Tokenizer.train("hello world", 300, pattern="[a-z]+"),
        ValueError,
        ["'[a-z]+'", "' '"],
    ),
    ("Tokenizer.train", lambda e: Tokenizer.train("ab", 300, pattern="("), ValueError, ["'('"]),
    (
        "Tokenizer.train",
        lambda e: Tokenizer.train("ab", 300, special_tokens=[""]),
        TypeError,
        ["['']"],
    ),
    ("Tokenizer.train", lambda e: Tokenizer.train("ab", 300, processes=0), ValueError, ["0"]),
    (
        "Tokenizer.encode",
        lambda e: e["tok"].encode("a<|endoftext|>"),
        ValueError,
        ["<|endoftext|>"],
    ),
    ("Tokenizer.encode", lambda e: e["tok"].encode(b"hi"), TypeError, ["bytes"]),
    (
        "Tokenizer.encode",
        lambda e: e["tok"].encode("hi", allowed_special={"<|x|>"}),
        ValueError,
        ["<|x|>"],
    ),
    ("Tokenizer.decode", lambda e: e["tok"].decode([1, 99999]), ValueError, ["99999"]),
    ("Tokenizer.decode", lambda e: e["tok"].decode([-1]), ValueError, ["-1"]),
    ("Tokenizer.decode", lambda e: e["tok"].decode([1.5]), TypeError, ["float"]),
    ("Tokenizer.decode", lambda e: e["tok"].decode("12"), TypeError, ["str"]),
    ("Tokenizer.load", lambda e: Tokenizer.load(e["ws"] / "missing"), ValueError, ["missing"]),
    (
        "Tokenizer.load",
        lambda e: Tokenizer.load(e["ws"] / "tok_damaged"),
        ValueError,
        ["vocab.tiktoken", "sha256"],
    ),
    (
        "Tokenizer.from_tiktoken_file",
        lambda e: Tokenizer.from_tiktoken_file(e["ws"] / "bad.bin"),
        ValueError,
        ["bad.bin"],
    ),
    # models
    (
        "Config",
        lambda e: Config(vocab_size=0, context=8, n_layers=1, d_model=8, n_heads=2),
        ValueError,
        ["vocab_size"],
    ),
    (
        "Config",
        lambda e: Config(vocab_size=9, context=8, n_layers=1, d_model=100, n_heads=3),
        ValueError,
        ["100", "3"],
    ),
    (
        "Config",
        lambda e: Config(vocab_size=9, context=8, n_layers=1, d_model=8, n_heads=2, family="bert"),
        ValueError,
        ["bert"],
    ),
    (
        "compose",
        lambda e: compose(Attention(32, 4, 8), Embedding(V, 16)),
        ShapeError,
        ["attn", "embed"],
    ),
    ("logits", lambda e: logits(e["model"], e["params"], [1, V]), ValueError, [str(V)]),
    ("logits", lambda e: logits(e["model"], e["params"], [1, -1]), ValueError, ["-1"]),
    ("logits", lambda e: logits(e["model"], e["params"], "hello"), ValueError, ["text"]),
    ("logits", lambda e: logits(e["model"], e["params"], [1.5]), ValueError, ["float"]),
    (
        "logits",
        lambda e: logits(e["model"], e["params"], list(range(T + 1))),
        ValueError,
        [str(T + 1)],
    ),
    ("logits", lambda e: logits(e["model"], e["params"], []), ValueError, ["empty"]),
    ("logits", lambda e: logits(e["model"], e["params"], [[[1]]]), ValueError, ["(1, 1, 1)"]),
    # generate
    ("generate", lambda e: generate(e["model"], e["params"], [1], 0), ValueError, ["got 0"]),
    (
        "generate",
        lambda e: generate(e["model"], e["params"], [1], 2, temperature=0, weights="fp16"),
        ValueError,
        ["'fp16'", "'bfloat16'"],
    ),
    (
        "generate",
        lambda e: generate(e["model"], e["params"], [1], T),
        ValueError,
        [f"max_new_tokens={T}"],
    ),
    (
        "generate",
        lambda e: generate(e["model"], e["params"], [1], 2, temperature=-1.0),
        ValueError,
        ["-1.0"],
    ),
    (
        "generate",
        lambda e: generate(e["model"], e["params"], [1], 2, key=jax.random.key(0), top_p=2.0),
        ValueError,
        ["2.0"],
    ),
    (
        "generate",
        lambda e: generate(e["model"], e["params"], [1], 2, key=jax.random.key(0), top_k=0),
        ValueError,
        ["got 0"],
    ),
    ("generate", lambda e: generate(e["model"], e["params"], [1], 2), ValueError, ["key"]),
    (
        "generate",
        lambda e: generate(e["model"], e["params"], [1], 2, temperature=0, stop_tokens=[V]),
        ValueError,
        [str(V)],
    ),
    (
        "generate",
        lambda e: generate(e["model"], e["params"], [V], 2, temperature=0),
        ValueError,
        [str(V)],
    ),
    # interop
    ("from_hf", lambda e: from_hf(e["ws"] / "missing"), FileNotFoundError, ["missing"]),
    ("from_hf", lambda e: from_hf(e["ws"] / "hf_damaged"), ValueError, ["model.safetensors"]),
    ("from_hf", lambda e: from_hf(e["ws"] / "emptydir"), FileNotFoundError, ["config.json"]),
    (
        "to_hf",
        lambda e: to_hf(e["model"], e["params"], e["ws"] / "hf"),
        FileExistsError,
        ["hf", "overwrite=True"],
    ),
    ("to_hf", lambda e: to_hf(e["model"], _nan(e["params"]), e["ws"] / "hf3"), ValueError, ["NaN"]),
    ("to_hf", lambda e: to_hf(Embedding(V, 16), {}, e["ws"] / "hf3"), ValueError, ["embed"]),
    # training and runs
    ("TrainConfig", lambda e: TrainConfig.preset("nope"), ConfigError, ["'nope'"]),
    ("TrainConfig", lambda e: TrainConfig.preset("tiny", lr=-1.0), ConfigError, ["-1.0"]),
    ("TrainConfig", lambda e: TrainConfig.preset("tiny", seed=2**40), ConfigError, [str(2**40)]),
    (
        "TrainConfig",
        lambda e: TrainConfig.preset("tiny", steps=5),
        ConfigError,
        ["--warmup_steps 5"],
    ),
    ("TrainConfig", lambda e: TrainConfig.preset("tiny", lrr=1.0), ConfigError, ["lrr"]),
    ("TrainConfig", lambda e: TrainConfig.preset("tiny", steps="10"), ConfigError, ["'10'"]),
    ("TrainConfig", lambda e: TrainConfig.preset("tiny", name="foo"), None, []),  # not an error
    (
        "load_for_inference",
        lambda e: load_for_inference(e["ws"] / "missing"),
        CheckpointError,
        ["missing"],
    ),
    (
        "load_for_inference",
        lambda e: load_for_inference(e["ws"] / "file.txt"),
        CheckpointError,
        ["file.txt"],
    ),
    (
        "load_for_inference",
        lambda e: load_for_inference(e["ws"] / "run_damaged"),
        CheckpointError,
        ["DAMAGED"],
    ),
    (
        "load_for_inference",
        lambda e: load_for_inference(e["ws"] / "run_nockpt"),
        CheckpointError,
        ["no complete checkpoint"],
    ),
    ("read_tokens", lambda e: read_tokens(e["ws"] / "text.txt"), DataError, ["text.txt"]),
]


@pytest.mark.parametrize("case", API, ids=[f"{c[0]}:{i}" for i, c in enumerate(API)])
def test_an_entry_point_refuses_bad_input_by_name(lib, case):
    _, call, kind, words = case
    before = snapshot(lib["ws"])
    if kind is None:
        call(lib)
        return
    with pytest.raises(kind) as e:
        call(lib)
    message = str(e.value)
    assert "\n" not in message.strip(), message
    for want in words:
        if want == "DAMAGED":
            want = _biggest(lib["ws"] / "run_damaged" / "checkpoints" / "10" / "params").name
        assert want in message, (want, message)
    assert snapshot(lib["ws"]) == before


def test_the_catalogue_covers_every_entry_point():
    sizes = Counter(c[0] for c in CLI) + Counter(c[0] for c in API if c[2] is not None)
    assert set(sizes) >= {"jaxformer", "train", "sample", "tokenizer", "describe", "convert"}
    assert sum(sizes.values()) >= 80
    print("catalogue:", dict(sizes), "=", sum(sizes.values()))


def test_either_spelling_of_a_flag_is_accepted():
    from jaxformer.cli import parser

    a = parser().parse_args(["train", "--max-minutes", "3", "--batch-size=4", "--n-layers", "1"])
    assert (a.set_max_minutes, a.set_batch_size, a.set_n_layers) == (3.0, 4, 1)
    b = parser().parse_args(
        ["sample", "--checkpoint", "r", "--prompt", "p", "--max_new_tokens", "5"]
    )
    assert b.max_new_tokens == 5
    c = parser().parse_args(["tokenizer", "encode", "--tokenizer", "t", "--allow_special"])
    assert c.allow_special
