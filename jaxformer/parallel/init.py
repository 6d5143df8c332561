"""Sharded initialisation: each device draws only its own shards, and the draw is
``model.init(key)``'s, value for value, on any mesh.

``model.init`` draws one flat z ~ N(0, 1)^N and gives parameter p the slice
z[o_p : o_p + |p|] (reshaped, times its std). JAX's threefry is counter-based:
z_j = √2 · erfinv(u(threefry(key, j))) depends on (key, j) alone. So a device holding
the block of p at offsets (a_1, …, a_r) computes z at the global indices

    j = o_p + Σ_i (a_i + ι_i) · stride_i            ι the local iota, stride_i of p's shape

of its block only: one threefry over the concatenated blocks of all parameters, inside
``shard_map``. No device ever holds more than its shards; the same seed gives the same
model on one device and on any mesh; the compile is one random kernel, not one per
parameter. (Slicing ``jax.random.normal(key, (N,))`` under jit with out_shardings
instead makes XLA materialise all of z on every device.)

``jax.eval_shape`` gives the shapes (and, with shardings attached, the targets that
orbax restores onto, for any device count) without computing anything.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.extend.random import threefry2x32_p
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from ..core import Map, is_param
from . import rules as R

_LO = np.nextafter(np.float32(-1), np.float32(0))  # jax.random.normal's open interval


def init_params(model: Map, key: jax.Array, mesh: Mesh, rules=R.RULES):
    """``model.init(key)``, drawn sharded: every parameter laid out as ``rules`` say."""
    if not jax.config.jax_threefry_partitionable:
        raise RuntimeError(
            "sharded init reproduces the partitionable threefry draw; "
            "set jax.config.update('jax_threefry_partitionable', True)"
        )
    if jax.random.key_data(key).shape != (2,):
        raise ValueError("sharded init draws as threefry does: pass a jax.random.key(seed)")
    spec = model.spec()
    shardings = R.param_shardings(spec, mesh, rules)
    leaves, tree = jax.tree.flatten(spec, is_leaf=is_param)
    specs = [s.spec for s in jax.tree.leaves(shardings)]
    if sum(p.size for p in leaves if p.std) >= 2**32:
        raise ValueError("sharded init counts parameters in uint32: at most 2³² - 1 of them")

    def draw(key_data):  # on each device: its block of every parameter
        local = [_local_shape(p.shape, s, mesh) for p, s in zip(leaves, specs)]
        j, o = [], 0  # the global indices into z of this device's blocks
        for p, s in zip(leaves, specs):
            if p.std:
                j.append(_global_index(p.shape, s, mesh, o).ravel())
                o += p.size
        cuts = np.cumsum([x.shape[0] for x in j])[:-1]
        z = iter(jnp.split(_normal_chunked(key_data, jnp.concatenate(j)), cuts) if j else ())
        return tree.unflatten(
            [
                p.std * next(z).reshape(shape) if p.std else jnp.full(shape, p.fill, jnp.float32)
                for p, shape in zip(leaves, local)
            ]
        )

    out_specs = tree.unflatten(specs)
    sharded = jax.shard_map(draw, mesh=mesh, in_specs=P(), out_specs=out_specs)
    return jax.jit(sharded, out_shardings=shardings)(jax.random.key_data(key))


def abstract_params(model: Map, mesh: Mesh, rules=R.RULES):
    """The params as ``jax.ShapeDtypeStruct``s carrying their shardings (restore targets)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return _with_shardings(shapes, R.param_shardings(model.spec(), mesh, rules))


def abstract_opt_state(optimizer: optax.GradientTransformation, params_like):
    """The optimizer state of ``params_like`` (abstract, with shardings), as for params."""
    shapes = jax.eval_shape(optimizer.init, params_like)
    shardings = R.opt_state_shardings(optimizer, shapes, _shardings(params_like))
    return _with_shardings(shapes, shardings)


def init_state(model: Map, optimizer: optax.GradientTransformation, key, mesh: Mesh, rules=R.RULES):
    """(params, opt_state), both sharded: θ = ``model.init(key)``, s = ``optimizer.init(θ)``."""
    params = init_params(model, key, mesh, rules)
    target = abstract_opt_state(optimizer, params)
    return params, jax.jit(optimizer.init, out_shardings=_shardings(target))(params)


def _global_index(shape, spec: P, mesh: Mesh, offset: int) -> jax.Array:
    """This device's block of ``offset + arange(prod(shape)).reshape(shape)`` (uint32)."""
    local = _local_shape(shape, spec, mesh)
    strides = [math.prod(shape[i + 1 :]) for i in range(len(shape))]
    j = jnp.full(local, offset, jnp.uint32)
    for i, (n, axes) in enumerate(zip(local, _padded(spec, len(shape)))):
        start = lax.axis_index(axes) * n if axes else 0
        iota = lax.broadcasted_iota(jnp.uint32, local, i) + jnp.uint32(start)
        j = j + iota * jnp.uint32(strides[i])
    return j


def _normal_chunked(key_data: jax.Array, j: jax.Array, chunk: int = 1 << 16) -> jax.Array:
    """``_normal_at`` a chunk at a time: the threefry's temporaries stay chunk-sized."""
    n = j.shape[0]
    if n <= chunk:
        return _normal_at(key_data, j)
    j = jnp.pad(j, (0, -n % chunk)).reshape(-1, chunk)
    return lax.map(lambda jc: _normal_at(key_data, jc), j).ravel()[:n]


def _normal_at(key_data: jax.Array, j: jax.Array) -> jax.Array:
    """z_j of ``jax.random.normal(key, (N,))`` at the indices ``j`` (N < 2³²)."""
    k1, k2 = (jnp.broadcast_to(k, j.shape) for k in key_data)
    b1, b2 = threefry2x32_p.bind(k1, k2, jnp.zeros_like(j), j)  # the 64-bit counter (0, j)
    one = np.float32(1).view(np.uint32)
    u = lax.bitcast_convert_type(((b1 ^ b2) >> np.uint32(9)) | one, jnp.float32) - 1
    u = jnp.maximum(_LO, u * (1 - _LO) + _LO)
    return np.float32(np.sqrt(2)) * lax.erf_inv(u)


def _local_shape(shape, spec: P, mesh: Mesh) -> tuple[int, ...]:
    sizes = [math.prod(mesh.shape[a] for a in R.axes_of(ax)) for ax in _padded(spec, len(shape))]
    return tuple(n // k for n, k in zip(shape, sizes))


def _padded(spec: P, rank: int) -> list:
    return list(spec) + [None] * (rank - len(spec))


def _shardings(tree):
    return jax.tree.map(lambda a: a.sharding, tree)


def _with_shardings(shapes, shardings):
    # a MaskedNode (the state of a frozen or unadapted param: none) stays one; its
    # sharding (replicated, from ``opt_state_shardings``) is nobody's
    masked = lambda x: isinstance(x, optax.MaskedNode)
    return jax.tree.map(
        lambda a, s: a if masked(a) else jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        shapes,
        shardings,
        is_leaf=masked,
    )
