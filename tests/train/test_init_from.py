"""``jaxformer train --init-from DIR``: training starts from an HF model's weights (its val
loss before the first step is transformers' on the same windows), the corpus is tokenized
by its tokenizer as ``tokenizers`` does, frozen parameters stay the HF weights, a LoRA run
trains its adapters alone and, stopped by SIGTERM, resumes bit for bit without the source,
and a jaxformer run serves as a source as well as an HF directory does."""

import json
import shutil

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from hf_dirs import hf_dir, write_run  # noqa: E402

from jaxformer.cli import main  # noqa: E402
from jaxformer.interop import from_hf  # noqa: E402
from jaxformer.models import build  # noqa: E402
from jaxformer.rundir import Checkpoints  # noqa: E402
from jaxformer.rundir_load import adapted, load_for_inference, read_configs  # noqa: E402
from jaxformer.train.config import ConfigError  # noqa: E402
from jaxformer.train.data import bundled_corpus, read_tokens  # noqa: E402
from jaxformer.train.report import read_metrics  # noqa: E402
from jaxformer.train.resolve import resolve  # noqa: E402

pytestmark = pytest.mark.slow  # an HF model and five training runs, in a module fixture

STEPS, T = 6, 64  # T: the HF model's context
FAULT = "JAXFORMER_FAULT_AT_STEP"  # "N:TERM": the loop sends itself SIGTERM after step N


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("init_from")
    text = bundled_corpus().read_text()[:30_000]
    (root / "text.txt").write_text(text)
    hf, tok = hf_dir(root / "hf", "gpt2")
    args = lambda out, source, *how: [
        "train", "--init-from", str(source), "--data", str(root / "text.txt"),
        "--cache", str(root / "cache"), "--out", str(out), "--steps", str(STEPS),
        "--lr", "1e-3", "--warmup_steps", "0", *(how or ("--freeze", "pos.*", "ln_f.*")),
        "--eval_every", "3", "--checkpoint_every", "2", "--sample_tokens", "0",
        "--progress", "false",
    ]  # fmt: skip
    lora = ("--lora_rank", "4", "--lora_targets", "W_Q,W_O,W_in")
    mp = pytest.MonkeyPatch()
    try:
        mp.delenv(FAULT, raising=False)
        assert main(args(root / "whole", root / "hf")) == 0
        assert main(args(root / "lora-whole", root / "hf", *lora)) == 0
        mp.setenv(FAULT, "3:TERM")
        assert main(args(root / "lora-cut", root / "hf", *lora)) == 0  # SIGTERM: at step 3
        mp.delenv(FAULT)
        shutil.copytree(root / "hf", root / "hf-kept")
        shutil.rmtree(root / "hf")  # a resumed run needs nothing of its source
        assert main([*args(root / "lora-cut", root / "hf", *lora), "--resume"]) == 0
        shutil.move(root / "hf-kept", root / "hf")
        config, params = from_hf(root / "hf")
        write_run(root / "as-run", config.config, params, load_for_inference(root / "whole")[2])
        assert main(args(root / "from-run", root / "as-run")) == 0
    finally:
        mp.undo()
    return root, text, hf, tok


def _metrics(run):
    return read_metrics(run / "metrics.jsonl")


def _params(run):
    return load_for_inference(run)[1]  # the last checkpoint's (a LoRA run's: merged)


def _val_text(text: str) -> str:
    cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1  # the default --val_fraction 0.1
    return text[cut:]


def test_the_first_eval_is_the_pretrained_models_loss_in_transformers(runs):
    root, text, hf, tok = runs
    ids = tok.encode(_val_text(text)).ids
    N = len(ids)
    starts = list(range(0, N - 1 - T, T)) + [N - 1 - T]  # every target 1 … N−1 scored once
    nll, scored = 0.0, set()
    with torch.no_grad():
        for s in starts:
            x = torch.tensor([ids[s : s + T + 1]])
            logp = torch.log_softmax(hf(x[:, :-1]).logits.double(), -1)[0]
            for t in range(T):
                if s + t + 1 not in scored:
                    scored.add(s + t + 1)
                    nll -= float(logp[t, ids[s + t + 1]])
    assert scored == set(range(1, N))
    first = next(r for r in _metrics(root / "whole") if "val_loss" in r)
    assert first["step"] == 0
    assert first["val_loss"] == pytest.approx(nll / (N - 1), rel=1e-5)
    last = [r for r in _metrics(root / "whole") if "val_loss" in r][-1]
    assert last["step"] == STEPS and last["val_loss"] < first["val_loss"] - 0.1


def test_the_corpus_is_tokenized_as_tokenizers_does(runs):
    root, text, _, tok = runs
    (folder,) = [p for p in (root / "cache").iterdir() if not p.name.startswith(".")]
    val = read_tokens(folder / "val.bin")
    assert val.tolist() == tok.encode(_val_text(text)).ids
    _, _, ours = load_for_inference(root / "whole")
    assert ours.encode_ordinary(text[:2000]) == tok.encode(text[:2000]).ids


def test_frozen_parameters_keep_the_hf_weights_and_the_rest_train(runs):
    root, _, hf, _ = runs
    params, sd = _params(root / "whole"), hf.state_dict()
    assert np.array_equal(params["pos"]["W_pos"], sd["transformer.wpe.weight"].numpy())
    assert np.array_equal(params["ln_f"]["gamma"], sd["transformer.ln_f.weight"].numpy())
    assert not np.allclose(params["embed"]["W_E"][:300], sd["transformer.wte.weight"][:300])
    saved = json.loads((root / "whole" / "config.json").read_text())["train"]
    assert saved["freeze"] == "pos.*,ln_f.*" and saved["init_from"] == str(root / "hf")


def test_a_run_is_a_source_as_its_hf_directory_is(runs):
    root = runs[0]
    a, b = _params(root / "whole"), _params(root / "from-run")
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    key = lambda r: (r["step"], r.get("loss"), r.get("val_loss"))
    drop_time = lambda run: [key(r) for r in _metrics(run)]
    assert drop_time(root / "from-run") == drop_time(root / "whole")


def test_a_model_setting_against_the_source_is_refused(runs, tmp_path):
    source = str(runs[0] / "hf")
    with pytest.raises(ConfigError, match=r"--n_layers 3 \(it has 2\).*drop --n_layers"):
        resolve("finetune", {"init_from": source, "n_layers": 3, "out": str(tmp_path / "a")})
    with pytest.raises(ConfigError, match="drop --tokenizer"):
        resolve("finetune", {"init_from": source, "tokenizer": source, "out": str(tmp_path / "b")})
    with pytest.raises(ConfigError, match="--init-from .*nowhere"):
        resolve("finetune", {"init_from": str(tmp_path / "nowhere"), "out": str(tmp_path / "c")})
    cfg, _ = resolve("finetune", {"init_from": source, "n_layers": 2, "out": str(tmp_path / "d")})
    assert (cfg.n_layers, cfg.d_model, cfg.vocab_size, cfg.lr) == (2, 32, 320, 5e-5)


def test_the_cli_says_what_is_wrong_in_one_line(runs, tmp_path, capsys):
    root = runs[0]
    argv = ["train", "--init-from", str(root / "hf"), "--data", str(root / "text.txt"),
            "--cache", str(root / "cache"), "--out", str(tmp_path / "x"), "--steps", "20",
            "--freeze", "blocks.nothing*"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--freeze 'blocks.nothing*' matches no parameter" in err[0]
    assert "blocks.attn.W_Q" in err[0] and not (tmp_path / "x" / "checkpoints").exists()


def test_a_lora_run_trains_its_adapters_alone_and_resumes_bit_for_bit_without_its_source(runs):
    root, _, hf, _ = runs
    train, config = read_configs(root / "lora-whole")
    like = jax.eval_shape(adapted(build(config), train).init, jax.random.key(0))
    ck = Checkpoints(root / "lora-whole", read_only=True)
    saved = ck.restore(STEPS, like)[0]  # as saved: the base params and the adapters
    ck.close()
    sd = hf.state_dict()
    assert np.array_equal(saved["blocks"]["attn"]["W_Q"][0].transpose(1, 0, 2).reshape(32, 32),
                          sd["transformer.h.0.attn.c_attn.weight"][:, :32].numpy())  # fmt: skip
    assert np.array_equal(saved["embed"]["W_E"], sd["transformer.wte.weight"].numpy())
    lora = saved["lora"]["blocks"]
    assert sorted(lora["attn"]) == ["W_O", "W_Q"] and sorted(lora["mlp"]) == ["W_in"]
    assert np.any(lora["attn"]["W_Q"]["B"])  # B starts at 0: it trained
    evals = [r["val_loss"] for r in _metrics(root / "lora-whole") if "val_loss" in r]
    assert evals[-1] < evals[0]
    key = lambda r: (r["step"], r["loss"], r["grad_norm"])
    steps = lambda run: [key(r) for r in _metrics(run) if "loss" in r]
    assert steps(root / "lora-cut") == steps(root / "lora-whole")
    a, b = _params(root / "lora-whole"), _params(root / "lora-cut")  # merged, for inference
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert (root / "lora-whole" / "adapter" / "adapter.safetensors").is_file()


def test_a_lora_run_converts_to_a_peft_adapter_of_the_same_logits(runs, tmp_path, capsys):
    peft = pytest.importorskip("peft")
    from hf_reference import hf_logits, load_hf, rel

    root = runs[0]
    assert (
        main(["convert", "--to-peft", str(root / "lora-whole"), "--out", str(tmp_path / "p")]) == 0
    )
    tuned = peft.PeftModel.from_pretrained(load_hf(root / "hf"), str(tmp_path / "p")).eval()
    config, merged, _ = load_for_inference(root / "lora-whole")
    x = np.array([[5, 17, 3, 99, 250, 7, 64, 1, 12, 40]])
    assert rel(np.asarray(build(config)(merged, x[0])), hf_logits(tuned, x)[0]) < 1e-5
    capsys.readouterr()
    assert main(["convert", "--to-peft", str(root / "whole"), "--out", str(tmp_path / "q")]) == 2
    assert "trained every parameter, not LoRA adapters" in capsys.readouterr().err
