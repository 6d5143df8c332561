"""OLMo 2's post-norm block on 8 CPU devices: the sharded step equals the library's on one.

x + N_1'(A(x)), then x + N_2'(M(x)): each branch's write is normalised over d before the sum,
so on the mesh that splits everything (data=2, fsdp=2, tensor=2) the norm reads the write
after the tensor axis has summed its heads (or hidden units); and QK-norm over all heads
reads q across the heads that ``tensor`` splits. As test_window_sharded.py: one
subprocess, whose XLA_FLAGS give 8 devices, runs eight_devices.py's ``run``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import with_devices
from jax.sharding import PartitionSpec as P

pytestmark = pytest.mark.slow  # a module fixture of a minute or more

MESH = (2, 2, 2)
TOL = 1e-5
CONFIG = 'Config("olmo2", 64, 16, 2, 32, 8, 4, d_mlp=64)'  # eight_devices.run: V=64, T=16
WORKER = """
import json, sys
sys.path.insert(0, {here!r})
import eight_devices as E
from jaxformer import Config
E.CONFIGS["olmo2"] = {config}
print(json.dumps(E.run("olmo2", [{mesh}])))
"""


def test_sharded_post_norm_step_equals_one_device():
    env = dict(os.environ, XLA_FLAGS=with_devices(8))
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    code = WORKER.format(here=str(Path(__file__).parent), config=CONFIG, mesh=MESH)
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
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
    assert m["mu_specs_match"]  # Adam's moments shard like θ
    # Written out from the table (H, G → tensor; d → fsdp; L, k → none), not computed.
    specs = m["specs"]
    for ln in ("ln1_post", "ln2_post"):
        assert specs[f"['blocks']['{ln}']['gamma']"]["spec"] == str(P(None, "fsdp"))
    for g in ("gamma_Q", "gamma_K"):  # [L, H | G, k]: split with their heads
        assert specs[f"['blocks']['attn']['{g}']"]["spec"] == str(P(None, "tensor", None))
    assert specs["['blocks']['attn']['gamma_K']"]["shards"] == [[2, 2, 4]]
    assert not any("['ln1']" in k or "['ln2']" in k for k in specs)  # no pre-norms
