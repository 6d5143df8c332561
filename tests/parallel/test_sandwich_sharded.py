"""Gemma 2's sandwich block on 8 CPU devices: the sharded step equals the library's step on
one device.

One subprocess (XLA_FLAGS fixes the device count before jax starts) runs eight_devices.py's
``run`` on one mesh that splits everything (data=2, fsdp=2, tensor=2): Gemma 2 with its
four (1 + γ) norms per block (ln1, ln1_post, ln2, ln2_post), a local and a global layer
(one ``pattern``: a switch inside the scan), soft-capped scores and logits, GQA, k ≠ d/H.
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
MODEL = (  # eight_devices.run's data: V = 64, T = 16
    'Config("gemma2", 64, 16, 2, 32, 8, 4, d_head=6, d_mlp=64, sliding_window=5, '
    "global_every=2, attn_softcap=5.0, logit_softcap=10.0, query_pre_attn_scalar=20)"
)
WORKER = """
import json, sys
sys.path.insert(0, {here!r})
import eight_devices as E
from jaxformer import Config
E.CONFIGS["gemma2"] = {model}
print(json.dumps(E.run("gemma2", [{mesh}])))
"""


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, XLA_FLAGS=with_devices(8))
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    code = WORKER.format(here=str(Path(__file__).parent), mesh=MESH, model=MODEL)
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Involuntary full rematerialization" not in r.stderr  # no resharding by replication
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_sharded_sandwich_step_equals_one_device(report):
    r = report["meshes"][str(MESH)]
    assert r["init_err"] == 0.0  # the sharded draw is model.init(key), value for value
    for got, want in zip(r["loss"], report["ref_loss"], strict=True):
        assert abs(got - want) <= TOL
    worst = max(r["param_err"], key=r["param_err"].get)
    assert r["param_err"][worst] <= TOL, f"{worst}: {r['param_err'][worst]}"
    assert r["moved"] > 30 * TOL  # the steps moved θ: the comparison has teeth
    assert r["mu_specs_match"]  # Adam's moments shard like θ


def test_every_norm_splits_d_and_the_heads_split(report):
    """The four gains [L, d] split d over fsdp (as every γ); W_Q [L, H, d, k] splits H, d."""
    from jax.sharding import PartitionSpec as P

    specs = report["meshes"][str(MESH)]["specs"]
    for ln in ("ln1", "ln1_post", "ln2", "ln2_post"):
        assert specs[f"['blocks']['{ln}']['gamma']"]["spec"] == str(P(None, "fsdp"))
    assert specs["['blocks']['attn']['W_Q']"]["spec"] == str(P(None, "tensor", "fsdp", None))
    assert specs["['blocks']['mlp']['W_gate']"]["spec"] == str(P(None, "fsdp", "tensor"))
