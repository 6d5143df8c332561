"""GPT-NeoX's sharded step on 8 CPU devices equals the library's step on one.

A parallel-residual block (both branches read the block's input: the attention's and
the MLP's writes meet in one sum), partial RoPE and an untied W_U, on the mesh that
splits everything (data=2, fsdp=2, tensor=2). As test_parallel_mesh.py: one subprocess,
whose XLA_FLAGS give 8 devices, runs eight_devices.py's ``run`` on this config.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import with_devices
from jax.sharding import PartitionSpec as P

from jaxformer import Config

pytestmark = pytest.mark.slow  # a module fixture of a minute or more

CONFIG = Config(
    "gpt_neox", 64, 16, 2, 32, n_heads=8, activation="gelu", rotary_fraction=0.5,
    parallel_residual=True,
)  # fmt: skip
MESH = (2, 2, 2)
TOL = 1e-5
RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
import eight_devices
from jaxformer import Config
eight_devices.CONFIGS["gpt_neox"] = Config.from_dict(json.loads(sys.argv[2]))
print(json.dumps(eight_devices.run("gpt_neox", [tuple(json.loads(sys.argv[3]))])))
"""
# Written out from the table (V, H, m → tensor; d → fsdp; L, k → none), not computed.
EXPECTED = {
    "['embed']['W_E']": ("tensor", "fsdp"),
    **{f"['blocks']['attn']['{k}']": (None, "tensor", "fsdp", None) for k in ("W_Q", "W_K", "W_V")},
    "['blocks']['attn']['W_O']": (None, "tensor", None, "fsdp"),
    **{f"['blocks']['attn']['{b}']": (None, "tensor", None) for b in ("b_Q", "b_K", "b_V")},
    "['blocks']['attn']['b_O']": (None, "fsdp"),
    "['blocks']['mlp']['W_in']": (None, "fsdp", "tensor"),
    "['blocks']['mlp']['b_in']": (None, "tensor"),
    "['blocks']['mlp']['W_out']": (None, "tensor", "fsdp"),
    "['blocks']['mlp']['b_out']": (None, "fsdp"),
    **{
        f"['blocks']['{n}']['{g}']": (None, "fsdp")
        for n in ("ln1", "ln2")
        for g in ("gamma", "beta")
    },
    "['ln_f']['gamma']": ("fsdp",),
    "['ln_f']['beta']": ("fsdp",),
    "['unembed']['W_U']": ("fsdp", "tensor"),
}


def test_sharded_parallel_residual_step_equals_one_device():
    env = dict(os.environ, XLA_FLAGS=with_devices(8))
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    here = str(Path(__file__).parent)
    args = [here, json.dumps(CONFIG.to_dict()), json.dumps(MESH)]
    r = subprocess.run(
        [sys.executable, "-c", RUN, *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Involuntary full rematerialization" not in r.stderr  # no resharding by replication
    report = json.loads(r.stdout.strip().splitlines()[-1])
    m = report["meshes"][str(MESH)]

    assert m["init_err"] == 0.0  # the sharded draw is model.init(key), value for value
    for got, want in zip(m["loss"], report["ref_loss"], strict=True):
        assert abs(got - want) <= TOL
    worst = max(m["param_err"], key=m["param_err"].get)
    assert m["param_err"][worst] <= TOL, f"{worst}: {m['param_err'][worst]}"
    assert m["moved"] > 30 * TOL  # the steps moved θ: the comparison has teeth

    sizes = dict(zip(("data", "fsdp", "tensor"), MESH))
    assert set(m["specs"]) == set(EXPECTED)
    for path, axes in EXPECTED.items():
        got = m["specs"][path]
        assert got["spec"] == str(P(*axes)), path
        shard = [n // (sizes[a] if a else 1) for n, a in zip(got["shape"], axes)]
        assert got["shards"] == [shard], path  # every device holds exactly its block
    assert m["mu_specs_match"]  # Adam's moments shard like θ
