"""``jaxformer convert --to-hf``, and the README's path: import a GPT-2 and sample from it."""

import numpy as np
import pytest
from conftest import REPO

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from jaxformer.cli import main  # noqa: E402
from jaxformer.interop import from_hf  # noqa: E402
from jaxformer.tokenizer import Tokenizer  # noqa: E402

V = 300


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A random GPT-2 (weights large enough for decisive argmaxes), saved, and its tokenizer."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=V, n_positions=32, n_embd=16, n_layer=2, n_head=2, attn_implementation="eager"
    )
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.3 * torch.randn_like(p))
    root = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(root / "hf")
    text = (REPO / "jaxformer" / "data" / "shakespeare.txt").read_text()[:20_000]
    tok = Tokenizer.train(text, V)
    return hf, root, tok


def write_run(run, config, params, tok):
    """A run directory as training writes it, holding ``params`` as its checkpoint."""
    from jaxformer.train import TrainConfig
    from jaxformer.train.checkpoint import Checkpoints, save_run_files
    from jaxformer.train.optim import optimizer

    train = TrainConfig.preset("tiny", out=str(run))
    save_run_files(run, train, config, tok)
    ckpt = Checkpoints(run)
    ckpt.save(1, params, optimizer(train).init(params), {"sampler": {"seed": 0, "step": 1}})
    ckpt.wait()
    ckpt.close()


def test_convert_a_run_to_hf(gpt2, tmp_path, capsys):
    """A run holding the imported GPT-2 exports to the same transformers model."""
    hf, root, tok = gpt2
    model, params = from_hf(root / "hf")
    write_run(tmp_path / "run", model.config, params, tok)
    out = tmp_path / "hf"
    assert main(["convert", "--to-hf", str(tmp_path / "run"), "--out", str(out)]) == 0

    back = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager")
    x = torch.as_tensor(np.random.default_rng(0).integers(0, V, (2, 20)))
    with torch.no_grad():
        assert (back.eval()(x).logits - hf(x).logits).abs().max() <= 1e-5
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok("to be, or not")["input_ids"] == tok.encode("to be, or not")

    assert main(["convert", "--to-hf", str(tmp_path / "run"), "--out", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_readme_convert_and_sample(gpt2):
    """The README snippet: greedy decoding matches transformers' own ``generate``."""
    from jaxformer.generate import generate

    hf, root, tok = gpt2
    model, params = from_hf(root / "hf")
    prompt = tok.encode("to be, or")
    new = generate(model, params, prompt, 8, temperature=0)

    x = torch.as_tensor([prompt])
    with torch.no_grad():
        ref = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=8, do_sample=False)
    assert np.asarray(new).tolist() == ref[0, len(prompt) :].tolist()
    assert isinstance(tok.decode(np.asarray(new).tolist()), str)
