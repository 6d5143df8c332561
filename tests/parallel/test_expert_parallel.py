"""Expert parallelism on 8 CPU devices: a mixture whose tokens travel to their experts by
all-to-all equals the one-device maps (experts_worker.py, in a subprocess whose XLA_FLAGS
give it 8 devices; the train step on expert meshes is in test_parallel_mesh.py).

    capacity 0   values and gradients equal the dense evaluation (every expert on every
                 token), and no pair is dropped
    capacity 1   values equal the numpy formula with each device's pairs past its share C
                 dropped, and the dropped fraction is the one the formula counts
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import with_devices
from experts_worker import MESHES

pytestmark = pytest.mark.slow  # a module fixture of half a minute
TOL = 1e-5


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, XLA_FLAGS=with_devices(8))
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    script = Path(__file__).with_name("experts_worker.py")
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mesh", MESHES, ids=str)
def test_dispatched_mixture_equals_dense(report, mesh):
    r = report[str(mesh)]
    assert r["value_err"] <= TOL
    assert r["grad_err"] <= TOL * r["grad_scale"] and r["grad_scale"] > 1e-3
    assert r["x_grad_err"] <= TOL
    assert r["dropped"] == 0.0


@pytest.mark.parametrize("mesh", MESHES, ids=str)
def test_capacity_drops_the_pairs_past_each_share(report, mesh):
    r = report[str(mesh)]
    assert r["capacity_err"] <= TOL
    assert r["capacity_dropped_np"] > 0  # the capacity bites: the comparison has teeth
    assert abs(r["capacity_dropped"] - r["capacity_dropped_np"]) <= 1e-6
