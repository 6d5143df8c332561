"""LoRA adapters out: an HF PEFT adapter (adapter_config.json + adapter_model.safetensors)
that ``peft`` loads onto the exported HF model gives the adapted model's logits, for GPT-2
(whose fused c_attn takes W_Q's and W_V's adapters as one of rank 2r, Conv1D) and Llama
(one module per matrix); and jaxformer's own adapter files read back exactly."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from hf_dirs import hf_dir  # noqa: E402
from hf_reference import hf_logits, load_hf, rel  # noqa: E402

from jaxformer.interop import from_hf  # noqa: E402
from jaxformer.interop.adapters import load_adapters, save_adapters, to_peft  # noqa: E402
from jaxformer.models.lora import lora  # noqa: E402

TARGETS = {
    "gpt2": ("W_Q", "W_V", "W_O", "W_in", "W_out"),
    "llama": ("W_Q", "W_K", "W_V", "W_O", "W_gate", "W_in", "W_out"),
}


def _adapted(path, family):
    model, params = from_hf(path)
    adapted = lora(model, rank=3, alpha=6.0, targets=TARGETS[family])
    init = adapted.init(jax.random.key(0))
    leaves, tree = jax.tree.flatten(init["lora"])
    keys = jax.random.split(jax.random.key(1), len(leaves))
    drawn = [0.2 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)]  # B ≠ 0
    return adapted, {**params, "lora": tree.unflatten(drawn)}


@pytest.mark.parametrize("family", list(TARGETS))
def test_peft_loads_the_export_with_the_adapted_logits(tmp_path, family):
    hf_dir(tmp_path / "hf", family)
    adapted, params = _adapted(tmp_path / "hf", family)
    to_peft(adapted, params, tmp_path / "adapter", base_model=str(tmp_path / "hf"))
    tuned = peft.PeftModel.from_pretrained(load_hf(tmp_path / "hf"), str(tmp_path / "adapter"))
    x = np.array([[5, 17, 3, 99, 250, 7, 64, 1, 12, 40, 8, 2]])
    want = hf_logits(tuned.eval(), x)[0]
    got = np.asarray(adapted(params, x[0]))
    base = hf_logits(load_hf(tmp_path / "hf"), x)[0]
    assert rel(base, want) > 0.05  # the adapter changes the logits, and peft applied it
    assert rel(got, want) < 1e-5


def test_adapters_save_alone_and_read_back_exactly(tmp_path):
    hf_dir(tmp_path / "hf", "llama")
    adapted, params = _adapted(tmp_path / "hf", "llama")
    save_adapters(tmp_path / "mine", adapted, params)
    again, adapter = load_adapters(tmp_path / "mine", adapted.f)
    assert (again.rank, again.alpha, again.targets) == (
        adapted.rank,
        adapted.alpha,
        adapted.targets,
    )
    same = jax.tree.map(np.array_equal, adapter["lora"], params["lora"])
    assert all(jax.tree.leaves(same))
    (tmp_path / "mine" / "adapter.safetensors").write_bytes(b"broken")
    with pytest.raises(ValueError, match="adapter.safetensors"):
        load_adapters(tmp_path / "mine", adapted.f)
