"""The README's "Fine-tune a pretrained model", run end to end: a small random GPT-2 saved
with ``save_pretrained`` (and a ``tokenizers`` BPE) plays the ``gpt2`` directory, the
bundled corpus plays ``my_texts/``. Fine-tuning lowers the eval loss that
``jaxformer eval`` reports (the LoRA run's too; and a chat JSONL's response loss, packed),
the frozen run keeps the HF embeddings
exactly, and the LoRA run's adapters, read back onto the HF model, are its merged model. Train
commands get a fixed, short length appended (argparse takes the last value)."""

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from hf_dirs import hf_dir  # noqa: E402

from jaxformer.cli import main  # noqa: E402
from jaxformer.interop import from_hf  # noqa: E402
from jaxformer.interop.adapters import load_adapters  # noqa: E402
from jaxformer.models import build  # noqa: E402
from jaxformer.rundir import Checkpoints  # noqa: E402
from jaxformer.rundir_load import load_for_inference  # noqa: E402
from jaxformer.train.data import bundled_corpus  # noqa: E402

pytestmark = pytest.mark.slow  # three training runs

REPO = Path(__file__).resolve().parents[1]
STEPS = 30
SHORT = ["--steps", str(STEPS), "--max_minutes", "0", "--progress", "false"]
SHORT += ["--sample_tokens", "0", "--eval_every", "1000"]


def section_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Fine-tune a pretrained model", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line.split("   #")[0].strip() for line in block.splitlines() if line.strip()]


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, f"{argv}\n{out.getvalue()[-2000:]}\n{err.getvalue()[-2000:]}"
    return out.getvalue()


def test_the_readme_fine_tuning_lowers_the_eval_loss(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JAXFORMER_FAULT_AT_STEP", raising=False)
    hf, _ = hf_dir(tmp_path / "gpt2", "gpt2")
    text = bundled_corpus().read_text()
    (tmp_path / "my_texts").mkdir()
    (tmp_path / "my_texts" / "a.txt").write_text(text[:20_000])
    (tmp_path / "my_texts" / "b.txt").write_text(text[20_000:40_000])
    paragraphs = [p.strip() for p in text[40_000:200_000].split("\n\n") if len(p.strip()) > 80]
    # chat.jsonl: a speech's first line the prompt, the rest its response
    with (tmp_path / "chat.jsonl").open("w") as f:
        for p in paragraphs[:400]:
            first, _, rest = p.partition("\n")
            f.write(json.dumps({"prompt": first + "\n", "response": rest}) + "\n")
    commands = section_commands()
    kinds = ["eval", "train", "eval", "train", "train", "eval", "convert", "train"]
    assert [c.split()[1] for c in commands] == kinds
    loss = {}
    for line in commands:
        argv = shlex.split(line)[1:]
        if argv[0] == "eval":
            loss[argv[2]] = json.loads(_run([*argv, "--json"]))["loss"]
        else:
            out = _run(argv + (SHORT if argv[0] == "train" else []))
            if "chat.jsonl" in argv:
                assert "documents packed" in out, out
    assert loss["runs/tuned"] < loss["gpt2"] - 0.05, loss
    # the LoRA path as well (rank 8 on W_Q, W_V moves less in 30 steps; an adapter that did
    # nothing would leave the loss exactly as it was)
    assert loss["runs/tuned-lora"] < loss["gpt2"] - 0.01, loss

    for run in ("runs/tuned", "runs/chat"):  # the chat run's: over the responses it trains
        tuned = [json.loads(r) for r in (tmp_path / run / "metrics.jsonl").open()]
        evals = [r for r in tuned if "val_loss" in r]
        assert evals[0]["step"] == 0 and evals[-1]["step"] == STEPS
        assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.05, (run, evals)

    config, _, _ = load_for_inference(tmp_path / "runs/tuned-top")
    ck = Checkpoints(tmp_path / "runs/tuned-top", read_only=True)
    params, _, _ = ck.restore(STEPS, jax.eval_shape(build(config).init, jax.random.key(0)))
    ck.close()
    sd = hf.state_dict()
    assert np.array_equal(params["embed"]["W_E"], sd["transformer.wte.weight"].numpy())
    assert np.array_equal(params["pos"]["W_pos"], sd["transformer.wpe.weight"].numpy())
    assert not np.array_equal(params["blocks"]["mlp"]["W_in"][0],
                              sd["transformer.h.0.mlp.c_fc.weight"].numpy())  # fmt: skip

    # the LoRA run: its adapters alone on disk, and read back onto the pretrained model
    # they give the merged model that eval read
    model, base = from_hf(tmp_path / "gpt2")
    adapted, adapter = load_adapters(tmp_path / "runs/tuned-lora/adapter", model)
    assert adapted.rank == 8 and [t.dotted for t in adapted.targets] == [
        "blocks.attn.W_Q", "blocks.attn.W_V"]  # fmt: skip
    _, merged, _ = load_for_inference(tmp_path / "runs/tuned-lora")
    x = np.arange(1, 40)
    np.testing.assert_allclose(adapted({**base, **adapter}, x), model(merged, x), rtol=1e-5,
                               atol=1e-5)  # fmt: skip
    assert (tmp_path / "peft/tuned-lora/adapter_config.json").is_file()  # peft reads it:
    # tests/train/test_init_from.py loads such an export in peft and compares the logits
