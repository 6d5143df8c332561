"""An HF directory wherever a run is accepted: ``sample`` decodes as transformers'
``generate``, ``describe`` counts the torch model's parameters, ``convert`` imports it as
a run and exports that run back to the same transformers model and tokenizer."""

import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from hf_dirs import EOT, TEXT, V, hf_dir  # noqa: E402
from hf_reference import hf_greedy, hf_logits, load_hf, rel  # noqa: E402

from jaxformer.cli import main  # noqa: E402
from jaxformer.generate.cli import sample  # noqa: E402
from jaxformer.interop import load_checkpoint  # noqa: E402
from jaxformer.rundir import CheckpointError  # noqa: E402
from jaxformer.rundir_load import load_for_inference  # noqa: E402
from jaxformer.tokenizer import HFTokenizer  # noqa: E402

pytestmark = pytest.mark.slow  # HF models and runs built in module fixtures

PROMPT = "KING HENRY. Now, lords"
FAMILIES = ("llama", "gpt2")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """{family: (dir, torch model, tokenizers.Tokenizer)}."""
    out = {}
    for family in FAMILIES:
        path = tmp_path_factory.mktemp(family)
        out[family] = (path, *hf_dir(path, family, seed=1))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_greedy_is_transformers_generate(dirs, family, capsys):
    path, hf, tok = dirs[family]
    n = 12
    argv = ["sample", "--checkpoint", str(path), "--prompt", PROMPT, "--temperature", "0",
            "--max-new-tokens", str(n)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    new = hf_greedy(hf, tok.encode(PROMPT).ids, n).tolist()
    eot = tok.token_to_id(EOT)
    new = new[: new.index(eot)] if eot in new else new  # both stop at <|endoftext|>
    assert capsys.readouterr().out == PROMPT + tok.decode(new) + "\n"  # unknown ids: ""

    config, params, ours = load_checkpoint(path)  # the ids themselves, through sample()
    got = sample(config, params, ours, PROMPT, max_new_tokens=n, temperature=0, out=io.StringIO())
    assert got == new


@pytest.mark.parametrize("family", FAMILIES)
def test_describe_counts_the_torch_parameters(dirs, family, capsys):
    path, hf, _ = dirs[family]
    assert main(["describe", str(path)]) == 0
    count = sum(p.numel() for p in hf.parameters())  # a tied matrix once
    assert f"{count:,} parameters" in capsys.readouterr().out


def test_convert_from_hf_to_a_run_and_back(dirs, tmp_path, capsys):
    path, hf, tok = dirs["llama"]
    run, back = tmp_path / "run", tmp_path / "back"
    assert main(["convert", "--from-hf", str(path), "--out", str(run)]) == 0
    assert main(["convert", "--to-hf", str(run), "--out", str(back)]) == 0, capsys.readouterr()

    x = np.random.default_rng(0).integers(0, V, (2, 24))
    assert rel(hf_logits(load_hf(back), x), hf_logits(hf, x)) <= 1e-6
    again = tokenizers.Tokenizer.from_file(str(back / "tokenizer.json"))
    assert again.encode(TEXT).ids == tok.encode(TEXT).ids

    config, _, run_tok = load_for_inference(run)  # the run holds the HF tokenizer as it was
    assert isinstance(run_tok, HFTokenizer) and config.vocab_size == V
    assert json.loads((run / "config.json").read_text())["train"] == {
        "converted_from": str(path.resolve())
    }
    assert main(["convert", "--from-hf", str(path), "--out", str(run)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", "--from-hf", str(path), "--out", str(run), "--overwrite"]) == 0


def test_convert_to_hf_from_an_hf_dir(dirs, tmp_path):
    path, hf, _ = dirs["gpt2"]
    assert main(["convert", "--to-hf", str(path), "--out", str(tmp_path / "again")]) == 0
    x = np.random.default_rng(1).integers(0, V, (2, 24))
    assert rel(hf_logits(load_hf(tmp_path / "again"), x), hf_logits(hf, x)) <= 1e-6


def test_refusals_name_the_directory(dirs, tmp_path, capsys):
    path = dirs["gpt2"][0]
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        (bare / f).write_bytes((path / f).read_bytes())
    assert main(["sample", "--checkpoint", str(bare), "--prompt", "Now"]) == 2
    err = capsys.readouterr().err
    assert str(bare) in err and "tokenizer.json" in err and len(err.splitlines()) == 1

    assert main(["convert", "--from-hf", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--from-hf" in err and "model_type" in err and len(err.splitlines()) == 1

    with pytest.raises(CheckpointError, match="Hugging Face model directory"):
        load_for_inference(path)
