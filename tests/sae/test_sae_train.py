"""Reading a model and splicing an SAE in, against references computed by hand; training:
a resumed run is the uninterrupted one bit for bit, a foreign checkpoint is refused."""

import jax
import numpy as np
import pytest

from jaxformer import Config, build
from jaxformer.rundir import CheckpointError, complete_steps
from jaxformer.sae import SAE, SAETrainConfig, activations, ce_recovered, load, sites, train
from jaxformer.train.report import read_metrics

V, T, D = 37, 16, 16
CONFIG = Config(family="gpt2", vocab_size=V, context=T, n_layers=2, d_model=D, n_heads=4)
MODEL = build(CONFIG)


def _noisy(params, seed=3, scale=0.2):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + scale * rng.standard_normal(x.shape, np.float32), params)


PARAMS = _noisy(MODEL.init(jax.random.key(0)))
RNG = np.random.default_rng(0)
TRAIN, VAL = RNG.integers(0, V, 6000), RNG.integers(0, V, 1000)
WINDOWS = np.stack([VAL[i * T : i * T + T + 1] for i in range(6)]).astype(np.int32)


def _ln(x, p):  # LayerNorm with the gpt2 family's eps, in numpy
    c = x - x.mean(-1, keepdims=True)
    return c / np.sqrt((c**2).mean(-1, keepdims=True) + 1e-5) * p["gamma"] + p["beta"]


def _nll(logits, y):
    z = logits - logits.max(-1, keepdims=True)
    return np.mean(np.log(np.exp(z).sum(-1)) - np.take_along_axis(z, y[..., None], -1)[..., 0])


def test_sites_and_activations_against_the_weights():
    names = set(sites(MODEL))
    assert {"embed", "blocks.0.resid_post", "blocks.1.resid_mid", "blocks.1.mlp"} <= names
    assert "unembed" not in names and "blocks.2.resid_post" not in names
    ids = WINDOWS[:3, :-1]
    W_E = np.asarray(PARAMS["embed"]["W_E"])
    np.testing.assert_allclose(np.asarray(activations(MODEL, PARAMS, ids, "embed")),
                               W_E[ids].reshape(-1, D), rtol=1e-6)  # fmt: skip
    # the last residual stream: the logits are LN_f of it against W_Eᵀ (tied unembedding)
    x = np.asarray(activations(MODEL, PARAMS, ids, "blocks.1.resid_post"))
    logits = np.asarray(jax.vmap(MODEL, in_axes=(None, 0))(PARAMS, ids)).reshape(-1, V)
    ln_f = jax.tree.map(np.asarray, PARAMS["ln_f"])
    np.testing.assert_allclose(_ln(x, ln_f) @ W_E.T, logits, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="blocks.7.mlp"):
        activations(MODEL, PARAMS, ids, "blocks.7.mlp")


def test_ce_recovered_against_splicing_by_hand():
    ln_f = jax.tree.map(np.asarray, PARAMS["ln_f"])
    W_E = np.asarray(PARAMS["embed"]["W_E"])
    x_in, y = WINDOWS[:, :-1], WINDOWS[:, 1:]
    x = np.asarray(activations(MODEL, PARAMS, x_in, "blocks.1.resid_post")).reshape(6, T, D)
    sae = SAE(D, 40, "topk", k=5)
    p = sae.init(jax.random.key(1))
    xhat = np.asarray(sae.apply(p, x.reshape(-1, D))).reshape(6, T, D)
    r = ce_recovered(MODEL, PARAMS, sae, p, WINDOWS, "blocks.1.resid_post", batch=4)
    clean, spliced = _nll(_ln(x, ln_f) @ W_E.T, y), _nll(_ln(xhat, ln_f) @ W_E.T, y)
    zero = _nll(np.broadcast_to(_ln(np.zeros(D), ln_f) @ W_E.T, (6, T, V)), y)
    np.testing.assert_allclose([r["ce_clean"], r["ce_sae"], r["ce_zero"]], [clean, spliced, zero],
                               rtol=1e-4)  # fmt: skip
    np.testing.assert_allclose(r["ce_recovered"], (zero - spliced) / (zero - clean), rtol=1e-4)

    # mid-model: an SAE that reconstructs exactly recovers all, one that outputs 0 nothing
    eye = np.eye(D, dtype=np.float32)
    exact = SAE(D, 2 * D, "relu", apply_b_dec_to_input=False)
    q = {"W_enc": np.concatenate([eye, -eye], 1), "b_enc": np.zeros(2 * D, np.float32),
         "W_dec": np.concatenate([eye, -eye], 0), "b_dec": np.zeros(D, np.float32)}  # fmt: skip
    r = ce_recovered(MODEL, PARAMS, exact, q, WINDOWS, "blocks.0.resid_mid")
    np.testing.assert_allclose(r["ce_sae"], r["ce_clean"], rtol=1e-5)
    assert abs(r["ce_zero"] - r["ce_clean"]) > 1e-3  # so that "recovers all" says something
    r = ce_recovered(MODEL, PARAMS, exact, q | {"W_dec": 0 * q["W_dec"]}, WINDOWS, "blocks.0.mlp")
    np.testing.assert_allclose(r["ce_sae"], r["ce_zero"], rtol=1e-6)
    np.testing.assert_allclose(r["ce_recovered"], 0, atol=1e-5)


class StopAfter:
    """``requested`` once it has been asked n + 1 times: a SIGTERM before step n + 1."""

    def __init__(self, n):
        self.n, self.asked = n, 0

    @property
    def requested(self):
        self.asked += 1
        return self.asked > self.n


def _cfg(**kw):
    base = dict(at="blocks.0.resid_post", latents=48, k=4, steps=12, batch=64, buffer=256,
                model_batch=4, eval_sequences=4, checkpoint_every=100, log_every=1,
                progress=False, warmup=3, dead_tokens=64)  # fmt: skip
    return SAETrainConfig(**(base | kw))


@pytest.mark.parametrize("variant", ["topk", "jumprelu"])
def test_resumed_run_is_the_uninterrupted_one(tmp_path, variant):
    cfg = _cfg(variant=variant, resample_every=4 if variant == "jumprelu" else 0)
    quiet = lambda line: None
    whole = train(cfg, MODEL, PARAMS, TRAIN, VAL, tmp_path / "a", log=quiet)
    assert train(cfg, MODEL, PARAMS, TRAIN, VAL, tmp_path / "b", stop=StopAfter(5),
                 log=quiet) == {"stopped": 5}  # fmt: skip
    assert complete_steps(tmp_path / "b") == [5] and not (tmp_path / "b" / "sae").exists()
    resumed = train(cfg, MODEL, PARAMS, TRAIN, VAL, tmp_path / "b", resume=True, log=quiet)
    (_, a, _), (_, b, _) = load(tmp_path / "a" / "sae"), load(tmp_path / "b" / "sae")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    lines = lambda d: [{k: v for k, v in r.items() if k != "train_seconds"}
                       for r in read_metrics(d / "metrics.jsonl")]  # fmt: skip
    assert lines(tmp_path / "a") == lines(tmp_path / "b")
    assert [r["step"] for r in lines(tmp_path / "b")] == [*range(1, 13), 12]
    for key in ("l0", "fve", "ce_recovered", "dead"):
        assert whole[key] == resumed[key]
    if variant == "topk":
        assert whole["l0"] <= 4
    with pytest.raises(CheckpointError, match="latents"):
        train(_cfg(variant=variant, latents=40), MODEL, PARAMS, TRAIN, VAL, tmp_path / "b",
              resume=True, log=quiet)  # fmt: skip
