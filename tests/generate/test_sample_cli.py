"""``jaxformer sample``: the streamed text is the decoded generation; errors exit 2."""

import argparse
import io

import jax
import numpy as np
import pytest
import reference as ref

from jaxformer import Config, build
from jaxformer.generate import cli as sample_cli
from jaxformer.generate import generate
from jaxformer.tokenizer import ENDOFTEXT, Tokenizer

TEXT = "héllo wörld, the cat sat on the mat. 日本語のテキスト. " * 20


@pytest.fixture(scope="module")
def run():
    """(config, params, tokenizer): few merges, so a character spans several tokens. The
    params are perturbed: wide logits, no near-ties for greedy decoding to split, and a
    greedy continuation of "the cat" that reaches the stop token after 9 tokens."""
    tok = Tokenizer.train(TEXT, vocab_size=280)
    c = Config(vocab_size=tok.n_vocab, context=64, n_layers=1, d_model=32, n_heads=2)
    rng = np.random.default_rng(2)
    noise = lambda x: x + 0.3 * rng.standard_normal(x.shape).astype(np.float32)
    return c, jax.tree.map(noise, build(c).init(jax.random.key(0))), tok


def numpy_greedy(c, params, ids, n):
    """n greedy tokens after ``ids``, each the argmax of the numpy forward pass of the whole
    sequence so far; and the least gap between the two largest logits on the way."""
    ids, new, gap = list(ids), [], np.inf
    for _ in range(n):
        z = ref.forward(params, np.array(ids), c)[-1]
        top2 = np.sort(z)[-2:]
        gap = min(gap, top2[1] - top2[0])
        new.append(int(z.argmax()))
        ids.append(new[-1])
    return new, gap


def parse(argv):
    p = argparse.ArgumentParser()
    sample_cli.add_parser(p.add_subparsers())
    return p.parse_args(argv)


def test_streamed_text_is_the_prompt_and_the_decoded_generation(run, monkeypatch, capsys):
    c, params, tok = run
    monkeypatch.setattr("jaxformer.rundir_load.load_for_inference", lambda d: run)
    args = parse(["sample", "--checkpoint", "x", "--prompt", "日本", "--temperature", "1.5"])
    args.max_new_tokens = 40
    assert args.run(args) == 0
    ids = tok.encode("日本")
    new = generate(build(c), params, ids, 40, key=jax.random.key(0), temperature=1.5).tolist()
    stop = tok.special_tokens[ENDOFTEXT]
    new = new[: new.index(stop)] if stop in new else new
    assert capsys.readouterr().out == "日本" + tok.decode(new) + "\n"


def test_sample_returns_the_ids_before_the_stop_token(run):
    c, params, tok = run
    stop = tok.special_tokens[ENDOFTEXT]
    want, gap = numpy_greedy(c, params, tok.encode("the cat"), 20)
    assert gap > 1e-2  # float32 cannot reorder the top two
    assert 0 < want.index(stop) < 19  # it stops mid-way: the cut is exercised
    want = want[: want.index(stop)]
    out = io.StringIO()
    new = sample_cli.sample(c, params, tok, "the cat", max_new_tokens=20, temperature=0, out=out)
    assert new == want
    assert out.getvalue() == "the cat" + tok.decode(want) + "\n"


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--prompt", ""], "--prompt is empty"),
        (["--prompt", "hi", "--temperature", "-1"], "temperature must be"),
        (["--prompt", "hi", "--top-p", "0"], "top_p must be in"),
        (["--prompt", "hi " * 64], "no room for a new token"),  # longer asks are clipped
        (["--prompt", "hi", "--top-k", "0"], "top_k must be"),
    ],
)
def test_bad_arguments_exit_2_with_the_fix(run, monkeypatch, capsys, argv, match):
    monkeypatch.setattr("jaxformer.rundir_load.load_for_inference", lambda d: run)
    args = parse(["sample", "--checkpoint", "x", *argv])
    assert args.run(args) == 2
    out, err = capsys.readouterr()
    assert match in err and out == ""


def test_a_missing_run_directory_exits_2(tmp_path, capsys):
    args = parse(["sample", "--checkpoint", str(tmp_path / "nope"), "--prompt", "hi"])
    assert args.run(args) == 2
    assert "jaxformer train" in capsys.readouterr().err
