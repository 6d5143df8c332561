"""An SAE on disk: our safetensors + cfg.json read back exactly and refused by name when
damaged; sae-lens' format read against sae-lens itself (its own save_model, its own
encode/decode), and written so that sae-lens' load_from_disk reads it."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sae_params import random_params

from jaxformer.sae import SAE, SAEFileError, load, load_saelens, save, save_saelens

D, N = 6, 20


def test_save_load_round_trip_and_damage(tmp_path):
    for variant in ("topk", "relu", "jumprelu"):
        sae = SAE(D, N, variant, k=4)
        p = random_params(sae)
        save(tmp_path / variant, sae, p, "blocks.1.resid_post", {"note": 1})
        back, q, cfg = load(tmp_path / variant)
        assert (
            back == sae and cfg["hook_name"] == "blocks.1.resid_post" and cfg["meta"] == {"note": 1}
        )
        for k in p:
            np.testing.assert_array_equal(q[k], p[k])
    d = tmp_path / "topk"
    raw = bytearray((d / "sae.safetensors").read_bytes())
    raw[-3] ^= 1
    (d / "sae.safetensors").write_bytes(bytes(raw))
    with pytest.raises(SAEFileError, match="sae.safetensors"):
        load(d)
    (d / "cfg.json").unlink()
    with pytest.raises(SAEFileError, match="cfg.json"):
        load(d)
    assert not any(p.name.endswith(".tmp") or p.name.startswith(".") for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match="log_threshold"):
        save(tmp_path / "bad", SAE(D, N, "jumprelu"), random_params(SAE(D, N, "relu")))


sae_lens = pytest.importorskip("sae_lens")
torch = pytest.importorskip("torch")


def _randomised(lens_sae, seed, threshold=False, scale_rows=False):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, t in lens_sae.state_dict().items():
            t.copy_(torch.randn(t.shape, generator=g))
        if scale_rows:
            lens_sae.W_dec.mul_(torch.rand(N, 1, generator=g) * 2 + 0.3)
        if threshold:
            lens_sae.threshold.copy_(torch.rand(N, generator=g) * 0.8)
    return lens_sae


def _lens_saes():
    L = sae_lens
    yield "standard", _randomised(L.StandardSAE(L.StandardSAEConfig(d_in=D, d_sae=N)), 0)
    no_b = L.StandardSAEConfig(d_in=D, d_sae=N, apply_b_dec_to_input=False)
    yield "standard", _randomised(L.StandardSAE(no_b), 1)
    yield "topk", _randomised(L.TopKSAE(L.TopKSAEConfig(d_in=D, d_sae=N, k=4)), 2)
    rescaled = L.TopKSAEConfig(d_in=D, d_sae=N, k=4, rescale_acts_by_decoder_norm=True)
    yield "topk", _randomised(L.TopKSAE(rescaled), 3, scale_rows=True)
    jr = L.JumpReLUSAE(L.JumpReLUSAEConfig(d_in=D, d_sae=N))
    yield "jumprelu", _randomised(jr, 4, threshold=True)


def test_reads_what_sae_lens_saves(tmp_path):
    x = np.random.default_rng(9).standard_normal((32, D)).astype(np.float32)
    for i, (arch, lens) in enumerate(_lens_saes()):
        lens.save_model(tmp_path / str(i))
        sae, p, cfg = load_saelens(tmp_path / str(i))
        assert cfg["architecture"] == arch and sae.variant == {"standard": "relu"}.get(arch, arch)
        with torch.no_grad():
            z_lens = lens.encode(torch.from_numpy(x)).numpy()
            xhat_lens = lens(torch.from_numpy(x)).numpy()
        z = np.asarray(sae.encode(p, jnp.asarray(x)))
        assert (z != 0).sum() > 0 and (z == 0).sum() > 0
        np.testing.assert_array_equal(z != 0, z_lens != 0)
        np.testing.assert_allclose(z, z_lens, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(sae.apply(p, jnp.asarray(x))), xhat_lens,
                                   rtol=1e-4, atol=1e-4)  # fmt: skip


def test_sae_lens_reads_what_we_save(tmp_path):
    x = np.random.default_rng(3).standard_normal((32, D)).astype(np.float32)
    for variant in ("relu", "topk", "jumprelu"):
        sae = SAE(D, N, variant, **({"k": 4} if variant == "topk" else {}))
        p = random_params(sae, 5)
        p["W_dec"] /= np.linalg.norm(p["W_dec"], axis=1, keepdims=True)
        save_saelens(tmp_path / variant, sae, p, "blocks.0.mlp")
        lens = sae_lens.SAE.load_from_disk(str(tmp_path / variant))
        assert lens.cfg.metadata.hook_name == "blocks.0.mlp"
        with torch.no_grad():
            got = lens(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(
            got, np.asarray(sae.apply(p, jnp.asarray(x))), rtol=1e-4, atol=1e-4
        )
        back, q, _ = load_saelens(tmp_path / variant)  # and our reader reads it back
        assert back == sae and all(np.allclose(q[k], p[k], rtol=1e-6) for k in p)


def test_pre_6_config_and_refusals(tmp_path):
    """A config written before sae-lens 6 (the documented fields: activation_fn,
    activation_fn_kwargs, hook_point); unsupported settings refused by name."""
    from safetensors.numpy import save_file

    sae = SAE(D, N, "topk", k=3)
    p = jax.tree.map(np.asarray, sae.init(jax.random.key(0)))
    save_file(p, str(tmp_path / "sae_weights.safetensors"))
    cfg = {"d_in": D, "d_sae": N, "activation_fn": "topk", "activation_fn_kwargs": {"k": 3},
           "hook_point": "blocks.1.hook_resid_post", "apply_b_dec_to_input": True}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    back, q, _ = load_saelens(tmp_path)
    assert back == sae
    for bad, match in (({"architecture": "gated"}, "gated"),
                       ({"normalize_activations": "layer_norm"}, "layer_norm")):  # fmt: skip
        (tmp_path / "cfg.json").write_text(json.dumps(cfg | bad))
        with pytest.raises(SAEFileError, match=match):
            load_saelens(tmp_path)
    (tmp_path / "sae_weights.safetensors").unlink()
    with pytest.raises(SAEFileError, match="sae_weights.safetensors"):
        load_saelens(tmp_path)
