"""The library's train step, on a mesh (the sharding itself is ``jaxformer.parallel``).

    step: (θ, s, x_MbT1) ↦ (θ', s', {loss, grad_norm})       the same map as train.step

``jax.jit`` of the library's step (unchanged: grad accumulation, clipping, AdamW) with
in/out shardings: θ and s as the rules say, the batch split over data × fsdp × expert,
the metrics replicated; the model inside carries the constraints of ``pin.py`` (the
residual stream, the unstacked weights). XLA's partitioner derives every collective
from these: the all-gathers of FSDP weights, the reduction of their gradients, the
all-reduce of the data-parallel gradients and of the tensor-parallel partial sums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import optax
from jax.sharding import Mesh, NamedSharding

from ..core import Map
from ..parallel import init as I
from ..parallel import rules as R
from ..parallel.batch import check_batch
from ..parallel.pin import pin_for_mesh
from . import step as S


@dataclass(frozen=True)
class ShardedStep:
    """The jitted step and the shardings it reads and writes (restore targets: θ, s)."""

    fn: Callable  # jax.jit of the library step, with shardings
    mesh: Mesh
    params: object  # NamedShardings of θ
    opt_state: object  # NamedShardings of s
    batch: NamedSharding

    def __call__(self, params, opt_state, batch_MbT1):
        check_batch(jax.tree.leaves(batch_MbT1)[0].shape, self.mesh)
        return self.fn(params, opt_state, batch_MbT1)

    def lower(self, params, opt_state, batch_MbT1):
        return self.fn.lower(params, opt_state, batch_MbT1)


def make_sharded_step(
    model: Map,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    rules=R.RULES,
    compute_dtype: str = "float32",
    trained=None,
) -> ShardedStep:
    """The library's train step for ``model``, jitted with shardings on ``mesh``."""
    params = I.abstract_params(model, mesh, rules)
    opt_state = I.abstract_opt_state(optimizer, params)
    shard = lambda tree: jax.tree.map(lambda a: a.sharding, tree)
    # unroll (CPU) before pinning: the pinned wrapper hides the Repeat from ``unrolled``
    pinned = pin_for_mesh(S.unrolled(model), mesh, rules)
    step = S.make_train_step(pinned, optimizer, compute_dtype, trained)
    batch = R.batch_sharding(mesh)
    fn = jax.jit(
        step,
        in_shardings=(shard(params), shard(opt_state), batch),
        out_shardings=(shard(params), shard(opt_state), R.replicated(mesh)),
        donate_argnums=(0, 1),
    )
    return ShardedStep(fn, mesh, shard(params), shard(opt_state), batch)


def stepper(model, opt, compute_dtype: str, mesh=None, trained=None):
    """(train_step, init_opt): the library's jitted step on one device, the sharded one
    (with the optimizer state initialised sharded like it) on a mesh. ``trained``: the
    labels of the parameters that train (``optim.labels``), None for all."""
    if mesh is None or mesh.size == 1:
        return S.make_train_step(model, opt, compute_dtype, trained), opt.init
    sharded = make_sharded_step(model, opt, mesh, compute_dtype=compute_dtype, trained=trained)
    return sharded, jax.jit(opt.init, out_shardings=sharded.opt_state)
