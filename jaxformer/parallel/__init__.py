"""Sharded training: one composite on a mesh of devices, across processes.

mesh.py         make_mesh(data, fsdp, tensor): the device mesh (Auto axes)
rules.py        RULES: parameter axis letters → mesh axes; param_shardings
init.py         init_params / init_state: model.init(key), drawn shard by shard
pin.py          pin_for_mesh: the sharding constraints inside the model

The train step jitted with these shardings is ``jaxformer.train.sharded``: this
package knows meshes and models, not training.
batch.py        data_shard, global_batch, global_rows: per-process data → global arrays
distributed.py  initialize (jax.distributed, checked); from_lead, barrier, check_same
"""

from .batch import data_shard, global_batch, global_rows
from .distributed import DistributedError, barrier, check_same, from_lead, initialize
from .init import abstract_opt_state, abstract_params, init_params, init_state
from .mesh import AXES, MeshError, make_mesh, parse_mesh
from .pin import pin_for_mesh
from .rules import RULES, batch_sharding, param_shardings, partition_spec

__all__ = [
    "AXES",
    "RULES",
    "DistributedError",
    "MeshError",
    "abstract_opt_state",
    "abstract_params",
    "barrier",
    "batch_sharding",
    "check_same",
    "data_shard",
    "from_lead",
    "global_batch",
    "global_rows",
    "init_params",
    "init_state",
    "initialize",
    "make_mesh",
    "param_shardings",
    "parse_mesh",
    "partition_spec",
    "pin_for_mesh",
]
