"""The notebooks run top to bottom, in a kernel on this interpreter (the venv's).

Each notebook is executed with nbclient; a notebook that records results writes them
as JSON to ``$JAXFORMER_NOTEBOOK_RESULTS``, which the test reads back.
"""

import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
import reference as ref
from nbclient import NotebookClient
from val_reference import val_reference

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "jaxformer-test"


def execute(name: str, tmp_path: Path, monkeypatch, optimized: bool = False) -> dict:
    """Run ``notebooks/<name>`` in a fresh kernel; return the results it wrote (if any).
    ``optimized``: with XLA's backend optimised (a notebook whose time is running, not
    compiling; the suite's flags leave it unoptimised, conftest.py)."""
    # A kernel spec of our own, so the kernel is this interpreter whatever specs the
    # machine has (a user-level "python3" spec could point at another Python).
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if optimized:
        flags = os.environ.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0", "")
        monkeypatch.setenv("XLA_FLAGS", flags.strip())
    results = tmp_path / "results.json"
    monkeypatch.setenv("JAXFORMER_NOTEBOOK_RESULTS", str(results))
    monkeypatch.setenv("JAXFORMER_NOTEBOOK_TMP", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    resources = {"metadata": {"path": str(NOTEBOOKS)}}
    NotebookClient(nb, timeout=900, kernel_name=KERNEL, resources=resources).execute()
    return json.loads(results.read_text()) if results.exists() else {}


def unflatten(flat) -> dict:
    """{"['params']['embed']['W_E']": array, …} (jax.tree_util.keystr paths) → nested dicts."""
    out: dict = {}
    for path, a in flat.items():
        *head, last = re.findall(r"\['(.*?)'\]", path)
        node = out
        for k in head:
            node = node.setdefault(k, {})
        node[last] = a
    return out


@pytest.mark.slow
def test_01_maps_and_composition(tmp_path, monkeypatch):
    out = execute("01_maps_and_composition.ipynb", tmp_path, monkeypatch)
    assert max(out.values()) < 1e-4, out  # the identities it shows hold
    # and its numbers are the numpy reference's: the hand-built model's logits, the same
    # with head 2 of layer 1 ablated, and the attention-only model's path terms' sum
    a = unflatten(np.load(tmp_path / "01_arrays.npz"))
    gpt = SimpleNamespace(
        family="gpt2", norm_eps=1e-5, positional="learned", activation="gelu_tanh"
    )
    p, t = a["params"], a["tokens"]
    np.testing.assert_allclose(a["logits"], ref.forward(p, t, gpt), atol=1e-5)
    H = p["blocks"]["attn"]["W_Q"].shape[1]
    ablate = lambda site, l, z: (
        z * (np.arange(H) != 2)[:, None, None] if (site, l) == ("z", 1) else z
    )
    np.testing.assert_allclose(a["ablated"], ref.forward(p, t, gpt, patch=ablate), atol=1e-5)
    assert np.abs(a["ablated"] - a["logits"]).max() > 1e-3  # the ablation moved them
    small = SimpleNamespace(**json.loads((tmp_path / "01_small_config.json").read_text()))
    np.testing.assert_allclose(a["paths_sum"], ref.forward(a["small_params"], t, small), atol=1e-5)


# 200 steps of the tiny preset reach about 3.8 bits/byte on this val text, a uniform
# guess over its 300 ids about 6.0: an untrained model stays near the uniform guess.
BEATS_UNIFORM_BY = 1.0  # bits per byte


@pytest.mark.slow
def test_02_trains_with_the_training_library(tmp_path, monkeypatch):
    out = execute("02_train_small_model.ipynb", tmp_path, monkeypatch)
    # the run it trained, in tmp_path: its final eval is the numpy score of its checkpoint
    want = val_reference(tmp_path / "run", (tmp_path / "shakespeare_300k.txt").read_text())
    assert out["val_bpb"] == pytest.approx(want.bpb, rel=1e-5), (out, want)
    assert out["val_bpb"] < want.uniform_bpb - BEATS_UNIFORM_BY, (out, want)
    assert abs(out["dla_sum"] - out["logit"]) < 1e-3, out


@pytest.mark.slow
def test_03_finds_an_induction_head(tmp_path, monkeypatch):
    out = execute("03_circuits_induction.ipynb", tmp_path, monkeypatch, optimized=True)
    assert out["induction_score"] > 0.5, out
    assert out["induction_head"][0] == 1, out  # it needs a previous-token head below it


def spearman(a, b):
    """Spearman's rank correlation, by double argsort (no ties in these real numbers)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.slow
def test_05_attribution_ranks_the_heads_as_patching_does(tmp_path, monkeypatch):
    out = execute("05_attribution_patching.ipynb", tmp_path, monkeypatch, optimized=True)
    real, att, ig = (np.asarray(out[k]) for k in ("real", "attribution", "integrated"))
    assert real.shape == att.shape == ig.shape == (8, 2, 4)
    rho_att = [spearman(a.ravel(), r.ravel()) for a, r in zip(att, real)]
    rho_ig = [spearman(g.ravel(), r.ravel()) for g, r in zip(ig, real)]
    np.testing.assert_allclose(out["rho_attribution"], rho_att)  # what it reports
    np.testing.assert_allclose(out["rho_ig"], rho_ig)
    assert np.mean(rho_ig) >= np.mean(rho_att) and np.mean(rho_ig) > 0.8, (rho_att, rho_ig)
    assert real[:, 1].max() > 1.0  # a layer-1 head carries the induction: patching matters


@pytest.mark.slow
def test_04_an_sae_on_the_residual_stream(tmp_path, monkeypatch):
    import sae_lens
    import torch

    from jaxformer.views import read_payload

    out = execute("04_sparse_autoencoder.ipynb", tmp_path, monkeypatch)
    ev = out["eval"]
    assert ev["eval_l0"] <= 16 and ev["eval_fve"] > 0.8 and ev["eval_ce_recovered"] > 0.8, ev
    # the latents it shows are sae-lens' own encoding of the same activations
    lens = sae_lens.SAE.load_from_disk(str(tmp_path / "sae_lens"))
    x = np.load(tmp_path / "04_x.npy")
    with torch.no_grad():
        z = lens.encode(torch.from_numpy(x)).numpy()
    shown = np.asarray(out["z_shown"])  # [24, T, 3]
    np.testing.assert_allclose(z[:, out["shown"]].reshape(shown.shape), shown, atol=1e-4)
    # and the page it drew holds the first of them, ranked as numpy ranks its texts' maxima
    page = read_payload((tmp_path / "04_feature.html").read_text())
    np.testing.assert_allclose(np.asarray(page["acts"]), shown[..., 0], atol=1e-6)
    peaks = shown[..., 0].max(axis=1)
    assert [e["text"] for e in page["top"]] == list(np.argsort(-peaks, kind="stable")[:5])
