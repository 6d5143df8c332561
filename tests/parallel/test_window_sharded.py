"""A sliding window on 8 CPU devices: the sharded step equals the library's step on one.

One subprocess (XLA_FLAGS fixes the device count before jax starts) runs eight_devices.py's
``run`` on the windowed models below, one mesh that splits everything (data=2, fsdp=2,
tensor=2): Mistral (GQA, a window of 5 in sequences of 16) and Qwen3 (its windowed
variant, with the per-head norms γ_Q, γ_K and k ≠ d/H).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import with_devices

pytestmark = pytest.mark.slow  # a module fixture of a minute or more

MESH = (2, 2, 2)
TOL = 1e-5
MODELS = {  # eight_devices.run's data: V = 64, T = 16
    "mistral": 'Config("mistral", 64, 16, 2, 32, 8, 4, d_mlp=64, sliding_window=5)',
    "qwen3": 'Config("qwen3", 64, 16, 2, 32, 8, 4, d_head=6, d_mlp=64, sliding_window=3)',
}
WORKER = """
import json, sys
sys.path.insert(0, {here!r})
import eight_devices as E
from jaxformer import Config
E.CONFIGS.update({{{models}}})
print(json.dumps({{f: E.run(f, [{mesh}]) for f in {names}}}))
"""


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, XLA_FLAGS=with_devices(8))
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    code = WORKER.format(
        here=str(Path(__file__).parent), mesh=MESH, names=list(MODELS),
        models=", ".join(f"{f!r}: {c}" for f, c in MODELS.items()),
    )  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Involuntary full rematerialization" not in r.stderr  # no resharding by replication
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("family", list(MODELS))
def test_sharded_windowed_step_equals_one_device(report, family):
    r = report[family]["meshes"][str(MESH)]
    assert r["init_err"] == 0.0  # the sharded draw is model.init(key), value for value
    for got, want in zip(r["loss"], report[family]["ref_loss"], strict=True):
        assert abs(got - want) <= TOL
    worst = max(r["param_err"], key=r["param_err"].get)
    assert r["param_err"][worst] <= TOL, f"{worst}: {r['param_err'][worst]}"
    assert r["moved"] > 30 * TOL  # the steps moved θ: the comparison has teeth
    assert r["mu_specs_match"]  # Adam's moments shard like θ


def test_per_head_norms_are_replicated_and_heads_split(report):
    """γ_Q, γ_K [L, k] have no axis the table splits; W_K [L, G, d, k] splits G and d."""
    from jax.sharding import PartitionSpec as P

    specs = report["qwen3"]["meshes"][str(MESH)]["specs"]
    for g in ("gamma_Q", "gamma_K"):
        assert specs[f"['blocks']['attn']['{g}']"]["spec"] == str(P(None, None))
    W_K = specs["['blocks']['attn']['W_K']"]
    assert W_K["spec"] == str(P(None, "tensor", "fsdp", None))
    assert W_K["shards"] == [[2, 2, 16, 6]]
