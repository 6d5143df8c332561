"""The parallel pieces in this process (one CPU device): meshes, rules, errors, batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxformer import Config, build
from jaxformer.core import Param
from jaxformer.parallel import (
    RULES,
    DistributedError,
    MeshError,
    data_shard,
    from_lead,
    global_batch,
    global_rows,
    initialize,
    make_mesh,
    parse_mesh,
    partition_spec,
    pin_for_mesh,
)
from jaxformer.parallel import init as I
from jaxformer.parallel.distributed import ENV
from jaxformer.parallel.mesh import resolve_sizes
from jaxformer.parallel.pin import Pinned

SIZES = {"data": 2, "fsdp": 2, "expert": 2, "tensor": 4}


# -- meshes ------------------------------------------------------------------------------
def test_mesh_axes_are_auto_and_named():
    mesh = make_mesh()
    assert mesh.axis_names == ("data", "fsdp", "expert", "tensor")
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_mesh_that_does_not_divide_the_devices_is_an_error():
    with pytest.raises(MeshError, match=r"needs 2 devices but there are 1"):
        make_mesh(data=2)
    with pytest.raises(MeshError, match="do not divide the 8 devices"):
        resolve_sizes({"data": -1, "fsdp": 3, "tensor": 1}, 8)
    with pytest.raises(MeshError, match="only one axis may be -1"):
        resolve_sizes({"data": -1, "fsdp": -1, "tensor": 1}, 8)
    with pytest.raises(MeshError, match="positive integer"):
        resolve_sizes({"data": 0, "fsdp": 1, "tensor": 1}, 8)
    assert resolve_sizes({"data": -1, "fsdp": 2, "tensor": 2}, 8)["data"] == 2


def test_parse_mesh():
    assert parse_mesh("data=2,tensor=4") == {"data": 2, "fsdp": 1, "expert": 1, "tensor": 4}
    assert parse_mesh("2,2,2") == {"data": 2, "fsdp": 2, "expert": 1, "tensor": 2}
    assert parse_mesh("data=2,expert=4") == {"data": 2, "fsdp": 1, "expert": 4, "tensor": 1}
    assert parse_mesh("fsdp=-1")["fsdp"] == -1
    for bad in ("2,2", "pipeline=2", "data=x"):
        with pytest.raises(MeshError, match="--mesh"):
            parse_mesh(bad)


# -- rules -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, axes, want",
    [
        ((64, 32), ("V", "d"), P("tensor", "fsdp")),
        ((2, 8, 32, 4), ("L", "H", "d", "k"), P(None, "tensor", "fsdp", None)),
        ((2, 4, 32, 4), ("L", "G", "d", "k"), P(None, "tensor", "fsdp", None)),
        ((2, 8, 4, 32), ("L", "H", "k", "d"), P(None, "tensor", None, "fsdp")),
        ((2, 32, 128), ("L", "d", "m"), P(None, "fsdp", "tensor")),
        ((2, 4, 32, 128), ("L", "E", "d", "m"), P(None, "expert", "fsdp", "tensor")),
        ((16, 32), ("T", "d"), P(None, "fsdp")),
        ((32,), ("d",), P("fsdp")),
        ((32, 32), ("d", "d"), P("fsdp", None)),  # a mesh axis splits one axis at most
    ],
)
def test_partition_spec_reads_the_table(shape, axes, want):
    assert partition_spec(Param(shape, axes), SIZES) == want


def test_axis_the_mesh_does_not_divide_is_an_error():
    W_K = Param((2, 2, 32, 4), ("L", "G", "d", "k"))  # 2 key/value heads, tensor=4
    with pytest.raises(MeshError, match=r"W_K: axis 'G' of size 2 .* size 4") as e:
        partition_spec(W_K, SIZES, where="W_K")
    assert "'G': None" in str(e.value)  # the fix is named
    assert partition_spec(W_K, SIZES, {**RULES, "G": None}) == P(None, None, "fsdp", None)


def test_rules_must_name_every_letter_and_mesh_axis():
    with pytest.raises(MeshError, match="axis 'Z' .* no sharding rule"):
        partition_spec(Param((4,), ("Z",)), SIZES)
    with pytest.raises(MeshError, match="no axis 'pipeline'"):
        partition_spec(Param((4,), ("d",)), SIZES, {"d": "pipeline"})
    assert partition_spec(Param((32,), ("d",)), SIZES, {"d": ("data", "fsdp")}) == P(
        ("data", "fsdp")
    )


# -- init --------------------------------------------------------------------------------
def test_counter_based_draw_is_jax_random_normal():
    key = jax.random.key(7)
    want = np.asarray(jax.random.normal(key, (1000,)))
    kd = jax.random.key_data(key)
    j = jnp.arange(200, 900, dtype=jnp.uint32)
    np.testing.assert_array_equal(np.asarray(I._normal_at(kd, j)), want[200:900])
    chunked = jax.jit(lambda j: I._normal_chunked(kd, j, chunk=64))(j)  # 700 = 10·64 + 60
    np.testing.assert_array_equal(np.asarray(chunked), want[200:900])


# -- the constraints the step's model carries --------------------------------------------
def test_pin_for_mesh_keeps_the_model_and_its_params():
    model = build(Config(vocab_size=64, context=16, n_layers=2, d_model=32, n_heads=4))
    pinned = pin_for_mesh(model, make_mesh())
    assert isinstance(pinned, Pinned) and isinstance(pinned.f.find("blocks").f, Pinned)
    assert jax.tree.structure(pinned.spec()) == jax.tree.structure(model.spec())
    params = model.init(jax.random.key(0))
    x = jnp.arange(8) % 64
    np.testing.assert_array_equal(pinned(params, x), model(params, x))


# -- batches -----------------------------------------------------------------------------
def test_one_process_reads_whole_batches():
    mesh = make_mesh()
    assert data_shard(mesh) == (0, 1)
    x = np.arange(2 * 4 * 5).reshape(2, 4, 5)
    g = global_batch(x, mesh)
    assert g.shape == (2, 4, 5) and g.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(g), x)
    mask = x[0] % 2 == 0  # rows every process holds whole (eval windows, masks) keep dtypes
    np.testing.assert_array_equal(np.asarray(global_rows(mask, mesh)), mask)
    with pytest.raises(ValueError, match=r"\[M, b/n, T\+1\] integer"):
        global_batch(x[0], mesh)
    with pytest.raises(ValueError, match="integer"):
        global_batch(x.astype(np.float32), mesh)


# -- distributed: settings are checked before anything starts -----------------------------
@pytest.fixture
def no_env(monkeypatch):
    for k in ENV.values():
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_no_settings_is_one_process(no_env):
    assert initialize() is False
    assert from_lead(7) == 7 and from_lead(True) is True  # one process decides alone


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(coordinator="127.0.0.1:1234"), "missing --num-processes .* --process-id"),
        (dict(num_processes=2, process_id=0), "missing --coordinator"),
        (dict(coordinator="localhost", num_processes=2, process_id=0), "HOST:PORT"),
        (dict(coordinator="h:99999", num_processes=2, process_id=0), "HOST:PORT"),
        (dict(coordinator="h:1234", num_processes=2, process_id=2), r"in \[0, 2\)"),
        (dict(coordinator="h:1234", num_processes=0, process_id=0), "at least 1"),
    ],
)
def test_bad_settings_are_errors(no_env, kw, match):
    with pytest.raises(DistributedError, match=match):
        initialize(**kw, log=lambda s: None)


def test_settings_come_from_the_environment(no_env):
    no_env.setenv("JAX_NUM_PROCESSES", "2")
    with pytest.raises(DistributedError, match="missing --coordinator .*JAX_COORDINATOR_ADDRESS"):
        initialize()
    no_env.setenv("JAX_PROCESS_ID", "one")
    with pytest.raises(DistributedError, match="JAX_PROCESS_ID='one' must be an integer"):
        initialize()
