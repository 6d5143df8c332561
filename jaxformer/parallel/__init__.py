"""Sharded training: one composite on a mesh of devices, across processes.

mesh.py         make_mesh(data, fsdp, tensor): the device mesh (Auto axes)
rules.py        RULES: parameter axis letters → mesh axes; param_shardings
init.py         init_params / init_state: model.init(key), drawn shard by shard
step.py         make_sharded_step: the library's train step, jitted with shardings
batch.py        data_shard, global_batch: per-process data → global arrays
distributed.py  initialize: jax.distributed.initialize, checked
"""

from .batch import data_shard, global_batch
from .distributed import DistributedError, initialize
from .init import abstract_opt_state, abstract_params, init_params, init_state
from .mesh import AXES, MeshError, make_mesh, parse_mesh
from .pin import pin_for_mesh
from .rules import RULES, batch_sharding, param_shardings, partition_spec
from .step import ShardedStep, make_sharded_step

__all__ = [
    "AXES",
    "RULES",
    "DistributedError",
    "MeshError",
    "ShardedStep",
    "abstract_opt_state",
    "abstract_params",
    "batch_sharding",
    "data_shard",
    "global_batch",
    "init_params",
    "init_state",
    "initialize",
    "make_mesh",
    "make_sharded_step",
    "param_shardings",
    "parse_mesh",
    "partition_spec",
    "pin_for_mesh",
]
