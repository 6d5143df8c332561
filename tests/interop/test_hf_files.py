"""The files from_hf reads (every layout transformers writes), and the clear errors that
from_hf / to_hf raise, naming what is wrong and leaving nothing half-done."""

import copy
import json
import shutil

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from jaxformer import Config, build, tokenwise  # noqa: E402
from jaxformer.interop import config_from_hf, from_hf, to_hf  # noqa: E402
from jaxformer.layers import RMSNorm  # noqa: E402


@pytest.fixture(scope="module")
def gpt2_hf():
    cfg = transformers.GPT2Config(vocab_size=32, n_positions=8, n_embd=8, n_head=2, n_layer=2)
    return transformers.GPT2LMHeadModel(cfg)


@pytest.fixture(scope="module")
def gpt2_dir(gpt2_hf, tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    gpt2_hf.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference(gpt2_dir):
    return from_hf(gpt2_dir)[1]


def same_params(a, b):
    return jax.tree.all(jax.tree.map(np.array_equal, a, b))


def test_sharded_checkpoint(gpt2_hf, reference, tmp_path):
    gpt2_hf.save_pretrained(tmp_path, max_shard_size="4KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert same_params(from_hf(tmp_path)[1], reference)


def test_hub_layout_without_prefix_and_with_mask_buffers(gpt2_hf, reference, tmp_path):
    """The Hub's gpt2 was saved from GPT2Model: no "transformer." and causal-mask buffers."""
    tensors = {k.removeprefix("transformer."): v.numpy() for k, v in gpt2_hf.state_dict().items()}
    del tensors["lm_head.weight"]
    for l in range(2):
        tensors[f"h.{l}.attn.bias"] = np.tril(np.ones((1, 1, 8, 8), np.float32))
        tensors[f"h.{l}.attn.masked_bias"] = np.array(-1e4, np.float32)
    gpt2_hf.config.save_pretrained(tmp_path)
    save_file(tensors, tmp_path / "model.safetensors")
    assert same_params(from_hf(tmp_path)[1], reference)


def test_tied_config_with_a_different_head(gpt2_hf, tmp_path):
    tensors = {k: v.numpy().copy() for k, v in gpt2_hf.state_dict().items()}
    tensors["lm_head.weight"] += 1.0
    gpt2_hf.config.save_pretrained(tmp_path)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="tie_word_embeddings=true but lm_head.weight differs"):
        from_hf(tmp_path)


def test_bfloat16_checkpoint_is_widened_exactly(gpt2_hf, tmp_path):
    half = copy.deepcopy(gpt2_hf).to(torch.bfloat16)
    half.save_pretrained(tmp_path)
    W_E = from_hf(tmp_path)[1]["embed"]["W_E"]
    assert W_E.dtype == np.float32
    assert np.array_equal(W_E, half.transformer.wte.weight.detach().float().numpy())


@pytest.fixture
def ckpt(gpt2_dir, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(gpt2_dir, dst)
    return dst


def edit_config(path, **changes):
    f = path / "config.json"
    f.write_text(json.dumps(json.loads(f.read_text()) | changes))


def test_truncated_safetensors(ckpt):
    f = ckpt / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a valid safetensors file"):
        from_hf(ckpt)


def test_corrupt_safetensors(ckpt):
    (ckpt / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        from_hf(ckpt)


def test_config_that_disagrees_with_the_tensors(ckpt):
    edit_config(ckpt, n_embd=12, n_head=3)
    msg = r"'transformer.wte.weight' has shape \(32, 8\), expected \(32, 12\)"
    with pytest.raises(ValueError, match=msg):
        from_hf(ckpt)


def test_missing_and_extra_tensors(ckpt):
    edit_config(ckpt, n_layer=3)
    with pytest.raises(ValueError, match=r"missing tensor 'transformer.h.2.attn.c_attn.weight'"):
        from_hf(ckpt)
    edit_config(ckpt, n_layer=1)
    with pytest.raises(ValueError, match=r"unexpected tensor\(s\) transformer.h.1.attn.c_attn"):
        from_hf(ckpt)
    edit_config(ckpt, n_layer=2, tie_word_embeddings=False)
    with pytest.raises(ValueError, match="missing tensor 'lm_head.weight'"):
        from_hf(ckpt)


def test_unsupported_model_type_and_fields(ckpt):
    edit_config(ckpt, model_type="bert")
    msg = r"model_type='bert' is not supported.*gpt2 \(GPT2LMHeadModel\).*llama"
    with pytest.raises(ValueError, match=msg):
        from_hf(ckpt)
    gpt2 = dict(model_type="gpt2", n_embd=8, n_head=2)
    for field, value in (
        ("scale_attn_by_inverse_layer_idx", True),
        ("scale_attn_weights", False),
        ("activation_function", "quick_gelu"),
    ):
        with pytest.raises(ValueError, match=f"{field}="):
            config_from_hf(gpt2 | {field: value})
    llama = dict(model_type="llama", hidden_size=8, num_attention_heads=2)
    for field, extra in (
        ("rope_parameters.rope_type", {"rope_parameters": {"rope_type": "llama3", "factor": 8.0}}),
        ("rope_scaling.rope_type", {"rope_scaling": {"type": "linear", "factor": 2.0}}),
        ("hidden_act", {"hidden_act": "gelu"}),
        ("mlp_bias", {"mlp_bias": True}),
    ):
        with pytest.raises(ValueError, match=f"{field}="):
            config_from_hf(llama | extra)


def test_rope_theta_in_either_place():
    base = dict(model_type="llama", hidden_size=8, num_attention_heads=2)
    new = base | {"rope_parameters": {"rope_type": "default", "rope_theta": 5e5}}
    old = base | {"rope_theta": 5e5, "rope_scaling": None}
    assert config_from_hf(new).rope_theta == config_from_hf(old).rope_theta == 5e5
    assert config_from_hf(base).rope_theta == 10000.0


def test_missing_files(ckpt):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights found"):
        from_hf(ckpt)
    (ckpt / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_hf(ckpt)


class Payload:  # an arbitrary object: what weights_only refuses to unpickle
    pass


def test_pytorch_bin_is_loaded_without_arbitrary_pickle(ckpt):
    (ckpt / "model.safetensors").unlink()
    torch.save({"transformer.wte.weight": Payload()}, ckpt / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin: cannot be read as a weights-only"):
        from_hf(ckpt)


SMALL = Config(family="llama", vocab_size=16, context=8, n_layers=1, d_model=8, n_heads=2)


def test_to_hf_rejects_what_hf_cannot_express(tmp_path):
    model = build(SMALL)
    params = model.init(jax.random.key(0))
    edited = model.replace("blocks.ln1", tokenwise(RMSNorm(8, 1e-3, name="ln1")))
    with pytest.raises(ValueError, match="not a model that jaxformer.models.build"):
        to_hf(edited, params, tmp_path / "a")
    attn_only = build(SMALL.replace(attn_only=True))
    with pytest.raises(ValueError, match="attn_only"):
        to_hf(attn_only, attn_only.init(jax.random.key(0)), tmp_path / "b")
    for field, value in (("qk_norm", "head"), ("sliding_window", 4)):  # a GPT-2 HF lacks
        gpt2 = build(SMALL.replace(family="gpt2", norm=None, positional=None, **{field: value}))
        with pytest.raises(ValueError, match=f"HF's GPT-2 has no {field}"):
            to_hf(gpt2, gpt2.init(jax.random.key(0)), tmp_path / field)
    bad = params | {"embed": {"W_E": np.zeros((16, 9), np.float32)}}
    with pytest.raises(ValueError, match=r"embed/W_E has shape \(16, 9\), expected \(16, 8\)"):
        to_hf(model, bad, tmp_path / "c")
    assert not any(tmp_path.iterdir())  # nothing written by a failed export


def test_to_hf_keeps_a_full_directory_unless_told(tmp_path):
    model = build(SMALL)
    params = model.init(jax.random.key(0))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_hf(model, params, tmp_path / "out")
    to_hf(model, params, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "SHA256SUMS",
        "config.json",
        "model.safetensors",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dirs left
