"""``jaxformer eval``: the loss over sliding windows is transformers' own (PyTorch forward
with ``labels``, the windows and masks of HF's perplexity guide), on HF directories and on
a run; bits per byte, perplexity and bzip2 -9 follow from independent formulas; bad input
exits 2 with one line."""

import bz2
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from hf_dirs import TEXT, hf_dir, write_run  # noqa: E402

from jaxformer.cli import main  # noqa: E402
from jaxformer.interop import from_hf  # noqa: E402
from jaxformer.tokenizer import Tokenizer  # noqa: E402

pytestmark = pytest.mark.slow  # models and runs built in module fixtures

REL = 1e-5


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """{family: (dir, torch model, tokenizers.Tokenizer)}, and the text file."""
    root = tmp_path_factory.mktemp("eval")
    (root / "text.txt").write_text(TEXT)
    dirs = {}
    for family in ("llama", "gpt2"):
        (root / family).mkdir()
        dirs[family] = (root / family, *hf_dir(root / family, family))
    return dirs, root / "text.txt"


def hf_sliding_nll(hf, ids: list[int], context: int, stride: int):
    """HF's perplexity guide: (Σ nll in float64, the targets scored, their positions). Each
    window's labels are −100 on the tokens an earlier window scored; the loss transformers
    returns is the mean over the window's scored targets."""
    total, n, scored, prev_end = 0.0, 0, [], 0
    for begin in range(0, len(ids), stride):
        end = min(begin + context, len(ids))
        x = torch.tensor([ids[begin:end]])
        y = x.clone()
        y[:, : -(end - prev_end)] = -100
        k = int((y[:, 1:] != -100).sum())
        if k:  # a window of one new token scores nothing (its loss would be 0/0)
            with torch.no_grad():
                total += float(hf(x, labels=y).loss) * k
            n += k
            scored += [begin + j for j in range(1, end - begin) if y[0, j] != -100]
        prev_end = end
        if end == len(ids):
            break
    return total, n, scored


def run_eval(argv, capsys) -> dict:
    assert main(["eval", *argv, "--json", "--progress", "false"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    return json.loads(out)


def check_against(r: dict, hf, ids: list[int], piece_bytes, context: int, stride: int) -> float:
    """Assert ``r`` is transformers' loss on ``ids`` and the formulas on its numbers; the
    relative difference of the loss."""
    total, n, scored = hf_sliding_nll(hf, ids, context, stride)
    diff = abs(r["loss"] - total / n) / (total / n)
    assert diff <= REL, (r["loss"], total / n)
    assert r["tokens"] == n and r["text_tokens"] == len(ids)
    assert r["bytes"] == sum(piece_bytes(ids[t]) for t in scored)
    assert r["bits_per_byte"] == pytest.approx(
        r["loss"] * r["tokens"] / (math.log(2) * r["bytes"]), rel=1e-12
    )
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]), rel=1e-12)
    assert r["tokens_per_s"] > 0
    return diff


@pytest.mark.parametrize(
    "family, context, stride, max_tokens",
    [("llama", 32, 32, None), ("llama", 32, 12, None), ("gpt2", None, 16, 700)],
)
def test_hf_dir_loss_is_transformers(hf_dirs, family, context, stride, max_tokens, capsys):
    dirs, text = hf_dirs
    path, hf, tok = dirs[family]
    argv = ["--checkpoint", str(path), "--data", str(text), "--stride", str(stride)]
    argv += ["--context", str(context)] if context else []
    argv += ["--max_tokens", str(max_tokens)] if max_tokens else []
    r = run_eval(argv + ["--batch_size", "5"], capsys)

    ids = tok.encode(TEXT).ids[:max_tokens]
    piece = lambda i: len(tok.decode([i]).encode())
    diff = check_against(r, hf, ids, piece, context or 64, stride)
    print(f"{family} C={context or 64} S={stride}: loss rel. diff {diff:.2e}")
    assert r["context"] == (context or 64) and r["stride"] == stride
    evaluated = tok.decode(ids).encode()
    assert r["text_bytes"] == len(evaluated)
    assert r["bzip2_bits_per_byte"] == 8 * len(bz2.compress(evaluated, 9)) / len(evaluated)


def test_a_run_evaluates_with_its_own_tokenizer(hf_dirs, tmp_path, capsys):
    """A run (as training writes it) holding the GPT-2's weights and a jaxformer tokenizer:
    its text is tokenized by the run's tokenizer (tiktoken's ids), scored as transformers."""
    dirs, text = hf_dirs
    path, hf, _ = dirs["gpt2"]
    model, params = from_hf(path)
    tok = Tokenizer.train(TEXT, 300)
    write_run(tmp_path / "run", model.config, params, tok)
    r = run_eval(["--checkpoint", str(tmp_path / "run"), "--data", str(text), "--stride", "40"],
                 capsys)  # fmt: skip
    ids = tok.to_tiktoken().encode_ordinary(TEXT)
    enc = tok.to_tiktoken()
    diff = check_against(r, hf, ids, lambda i: len(enc.decode_single_token_bytes(i)), 64, 40)
    print(f"run C=64 S=40: loss rel. diff {diff:.2e}")


def test_the_human_report(hf_dirs, capsys):
    dirs, text = hf_dirs
    argv = ["eval", "--checkpoint", str(dirs["llama"][0]), "--data", str(text), "--max_tokens",
            "100", "--progress", "false"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    for word in ("nats/token", "perplexity", "bits/byte", "bzip2 -9", "tokens/s"):
        assert word in out


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--data", "MISSING"], ["--data 'missing'", "no such file"]),
        (["--data", "EMPTY"], ["empty.txt", "the text is empty"]),
        (["--checkpoint", "MISSING"], ["--checkpoint 'missing'"]),
        (["--checkpoint", "NOTOK"], ["tokenizer.json", "save the model's tokenizer"]),
        (["--context", "65"], ["--context 65", "64"]),
        (["--context", "1"], ["--context 1", "at least 2"]),
        (["--stride", "0"], ["--stride 0", "at least 1"]),
        (["--stride", "-3"], ["--stride -3"]),
        (["--stride", "65"], ["--stride 65", "--context 64"]),
        (["--context", "16", "--stride", "17"], ["--stride 17", "--context 16"]),
        (["--batch_size", "0"], ["--batch_size 0"]),
        (["--max_tokens", "1"], ["--max_tokens 1"]),
        (["--data", "ONE"], ["1 token", "at least 2"]),
        (["--data", "DOCS"], ["docs.jsonl", "not JSONL"]),
    ],
)
def test_bad_input_exits_2_in_one_line(hf_dirs, tmp_path, capsys, extra, words):
    dirs, text = hf_dirs
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "one.txt").write_text("a")
    (tmp_path / "docs.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "notok").mkdir()
    for f in ("config.json", "model.safetensors"):
        (tmp_path / "notok" / f).write_bytes((dirs["llama"][0] / f).read_bytes())
    names = {"MISSING": tmp_path / "missing", "EMPTY": tmp_path / "empty.txt",
             "ONE": tmp_path / "one.txt", "NOTOK": tmp_path / "notok",
             "DOCS": tmp_path / "docs.jsonl"}  # fmt: skip
    args = {"--checkpoint": str(dirs["llama"][0]), "--data": str(text)}
    for k, v in zip(extra[::2], extra[1::2]):
        args[k] = str(names.get(v, v))
    argv = ["eval", *[x for kv in args.items() for x in kv]]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.replace(str(tmp_path) + "/", "")
    assert captured.out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("jaxformer eval: error: ") and "Traceback" not in err
    for w in words:
        assert w in err, err


def test_windows_cover_each_target_once():
    """The plan against the guide's loop, by brute force over small sizes."""
    from jaxformer.evaluation import plan

    for n in range(2, 30):
        for c in range(2, 9):
            for s in range(1, c + 1):
                want, prev = [], 0
                for b in range(0, n, s):
                    e = min(b + c, n)
                    want += [(b, t) for t in range(max(prev, b + 1), e)]
                    prev = e
                    if e == n:
                        break
                got = [(b, t) for b, st, e in plan(n, c, s) for t in range(st, e)]
                assert got == want, (n, c, s)
                assert np.all(plan(n, c, s)[:, 1] < plan(n, c, s)[:, 2])
