"""The notebooks run top to bottom, in a kernel on this interpreter (the venv's).

Each notebook is executed with nbclient; a notebook that records results writes them
as JSON to ``$JAXFORMER_NOTEBOOK_RESULTS``, which the test reads back.
"""

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "jaxformer-test"


def execute(name: str, tmp_path: Path, monkeypatch) -> dict:
    """Run ``notebooks/<name>`` in a fresh kernel; return the results it wrote (if any)."""
    # A kernel spec of our own, so the kernel is this interpreter whatever specs the
    # machine has (a user-level "python3" spec could point at another Python).
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    results = tmp_path / "results.json"
    monkeypatch.setenv("JAXFORMER_NOTEBOOK_RESULTS", str(results))
    monkeypatch.setenv("JAXFORMER_NOTEBOOK_TMP", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    resources = {"metadata": {"path": str(NOTEBOOKS)}}
    NotebookClient(nb, timeout=900, kernel_name=KERNEL, resources=resources).execute()
    return json.loads(results.read_text()) if results.exists() else {}


@pytest.mark.slow
def test_01_maps_and_composition(tmp_path, monkeypatch):
    out = execute("01_maps_and_composition.ipynb", tmp_path, monkeypatch)
    assert max(out.values()) < 1e-4, out  # the identities it shows hold


@pytest.mark.slow
def test_02_trains_with_the_training_library(tmp_path, monkeypatch):
    out = execute("02_train_small_model.ipynb", tmp_path, monkeypatch)
    assert 0 < out["val_bpb"] < 8, out  # below a uniform guess over bytes
    assert abs(out["dla_sum"] - out["logit"]) < 1e-3, out


@pytest.mark.slow
def test_03_finds_an_induction_head(tmp_path, monkeypatch):
    out = execute("03_circuits_induction.ipynb", tmp_path, monkeypatch)
    assert out["induction_score"] > 0.5, out
    assert out["induction_head"][0] == 1, out  # it needs a previous-token head below it
