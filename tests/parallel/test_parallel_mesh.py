"""The sharded step on 8 CPU devices equals the library's step on one, on meshes
(data, fsdp, expert, tensor) of data alone, data × fsdp × tensor, tensor alone, and for a
mixture of experts, the expert axis with data and fsdp (with tensor and the other
meshes: the layer alone, test_expert_parallel.py).

One subprocess (XLA_FLAGS fixes the device count before jax starts, and this worker's
jax must keep its own) runs eight_devices.py; the tests read its JSON report. GPT-2
runs on the three meshes; Llama (grouped-query W_K, W_V; SwiGLU's W_gate; an untied
W_U) on the one that splits everything; Mixtral (8 experts, 2 per token, tokens sent to
their experts by all-to-all) on data × fsdp × expert.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import with_devices

pytestmark = pytest.mark.slow  # a module fixture of a minute or more

RUNS = [("gpt2", m) for m in [(8, 1, 1, 1), (2, 2, 1, 2), (1, 1, 1, 8)]] + [("llama", (2, 2, 1, 2))]
RUNS += [("mixtral", (2, 2, 2, 1))]
TOL = 1e-5

# Written out from the table (V, H, G, m → tensor; d → fsdp; E → expert; e, L, k, T → none),
# not computed.
ATTN = {
    "W_Q": (None, "tensor", "fsdp", None),
    "W_K": (None, "tensor", "fsdp", None),
    "W_V": (None, "tensor", "fsdp", None),
    "W_O": (None, "tensor", None, "fsdp"),
}
NORMS = ("ln1", "ln2")
EXPECTED = {
    "gpt2": {
        "['embed']['W_E']": ("tensor", "fsdp"),
        "['pos']['W_pos']": (None, "fsdp"),
        **{f"['blocks']['attn']['{k}']": v for k, v in ATTN.items()},
        "['blocks']['attn']['b_Q']": (None, "tensor", None),
        "['blocks']['attn']['b_K']": (None, "tensor", None),
        "['blocks']['attn']['b_V']": (None, "tensor", None),
        "['blocks']['attn']['b_O']": (None, "fsdp"),
        "['blocks']['mlp']['W_in']": (None, "fsdp", "tensor"),
        "['blocks']['mlp']['b_in']": (None, "tensor"),
        "['blocks']['mlp']['W_out']": (None, "tensor", "fsdp"),
        "['blocks']['mlp']['b_out']": (None, "fsdp"),
        **{
            f"['blocks']['{n}']['{g}']": (None, "fsdp")
            for n in ("ln1", "ln2")
            for g in "gamma beta".split()
        },
        "['ln_f']['gamma']": ("fsdp",),
        "['ln_f']['beta']": ("fsdp",),
    },
    "llama": {
        "['embed']['W_E']": ("tensor", "fsdp"),
        **{f"['blocks']['attn']['{k}']": v for k, v in ATTN.items()},
        "['blocks']['mlp']['W_gate']": (None, "fsdp", "tensor"),
        "['blocks']['mlp']['W_in']": (None, "fsdp", "tensor"),
        "['blocks']['mlp']['W_out']": (None, "tensor", "fsdp"),
        "['blocks']['ln1']['gamma']": (None, "fsdp"),
        "['blocks']['ln2']['gamma']": (None, "fsdp"),
        "['ln_f']['gamma']": ("fsdp",),
        "['unembed']['W_U']": ("fsdp", "tensor"),
    },
    "mixtral": {
        "['embed']['W_E']": ("tensor", "fsdp"),
        **{f"['blocks']['attn']['{k}']": v for k, v in ATTN.items()},
        "['blocks']['mlp']['W_R']": (None, "fsdp", None),
        "['blocks']['mlp']['W_gate']": (None, "expert", "fsdp", "tensor"),
        "['blocks']['mlp']['W_in']": (None, "expert", "fsdp", "tensor"),
        "['blocks']['mlp']['W_out']": (None, "expert", "tensor", "fsdp"),
        "['blocks']['ln1']['gamma']": (None, "fsdp"),
        "['blocks']['ln2']['gamma']": (None, "fsdp"),
        "['ln_f']['gamma']": ("fsdp",),
        "['unembed']['W_U']": ("fsdp", "tensor"),
    },
}


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, XLA_FLAGS=with_devices(8))
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    script = Path(__file__).with_name("eight_devices.py")
    args = [f"{family}:{','.join(map(str, mesh))}" for family, mesh in RUNS]
    r = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Involuntary full rematerialization" not in r.stderr  # no resharding by replication
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("family, mesh", RUNS, ids=str)
def test_sharded_step_equals_one_device(report, family, mesh):
    r = report[family]["meshes"][str(mesh)]
    assert r["init_err"] == 0.0  # the sharded draw is model.init(key), value for value
    for got, want in zip(r["loss"], report[family]["ref_loss"]):
        assert abs(got - want) <= TOL
    for got, want in zip(r["aux"], report[family]["ref_aux"]):
        assert abs(got - want) <= TOL  # a mixture's auxiliary losses, from its routing
    assert r["dropped"] == [0.0] * len(r["loss"])  # capacity 0: no pair dropped
    worst = max(r["param_err"], key=r["param_err"].get)
    assert r["param_err"][worst] <= TOL, f"{worst}: {r['param_err'][worst]}"
    assert r["moved"] > 30 * TOL  # the steps moved θ by ~2·lr: the comparison has teeth


@pytest.mark.parametrize("family, mesh", RUNS, ids=str)
def test_params_are_sharded_as_the_rules_say(report, family, mesh):
    from jax.sharding import PartitionSpec as P

    sizes = dict(zip(("data", "fsdp", "expert", "tensor"), mesh))
    r = report[family]["meshes"][str(mesh)]
    assert set(r["specs"]) == set(EXPECTED[family])
    for path, axes in EXPECTED[family].items():
        got = r["specs"][path]
        assert got["spec"] == str(P(*axes)), path
        shard = [n // (sizes[a] if a else 1) for n, a in zip(got["shape"], axes)]
        assert got["shards"] == [shard], path  # every device holds exactly its block
    assert r["mu_specs_match"]  # Adam's moments shard like θ
