"""Run by test_expert_parallel.py in a subprocess whose XLA_FLAGS give 8 CPU devices.

A mixture (E=8 experts, k=2, d=16) on a batch of 8 sequences of 6 tokens, dispatched over
each mesh's expert axis, against two references on one device:

  * capacity 0 (no drop): the dense evaluation (every expert on every token), values and
    gradients (of the params and of x);
  * capacity 1: the same map written out in numpy (router, top-k, each device's pairs
    kept in pair order while its share C = ⌈N·k/P⌉ for each destination lasts, experts).

Prints one JSON line: the errors and dropped fractions per mesh.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxformer.layers.moe import MoE
from jaxformer.parallel import AXES, make_mesh, param_shardings
from jaxformer.parallel.pin import pin_for_mesh
from jaxformer.parallel.rules import BATCH

D, M, E, K, B, T = 16, 24, 8, 2, 8, 6
MESHES = [(1, 1, 8, 1), (2, 1, 4, 1), (1, 2, 2, 2)]


def objective(moe):
    """(θ, x) ↦ (Σ sin(y), the dropped fraction): a scalar that reads every output."""

    def f(params, x):
        y, points = jax.vmap(moe.forward, in_axes=(None, 0))(params, x)
        return jnp.sum(jnp.sin(y)), jnp.mean(points[f"{moe.name}.dropped"])

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))


def numpy_reference(params, x, S: int, P_: int, factor: float):
    """(y [B, T, d], dropped fraction): the map with capacity, from the formulas."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    tokens = np.asarray(x, np.float64).reshape(-1, D)
    logits = tokens @ p["W_R"]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    chosen = np.argsort(-probs, axis=-1)[:, :K]
    gates = np.take_along_axis(probs, chosen, -1)
    gates /= gates.sum(-1, keepdims=True)  # renormalized over the k (Mixtral)
    N = len(tokens) // S  # each device's tokens: a contiguous block of the batch
    C = math.ceil(factor * N * K / P_)
    y, dropped = np.zeros_like(tokens), 0
    for dev in range(S):
        sent = np.zeros(P_, int)  # pairs this device has sent to each expert device
        for t in range(dev * N, (dev + 1) * N):
            for j in range(K):
                e = chosen[t, j]
                q = e // (E // P_)
                sent[q] += 1
                if sent[q] > C:
                    dropped += 1
                    continue
                u = tokens[t]
                h = u @ p["W_gate"][e]
                h = h / (1 + np.exp(-h)) * (u @ p["W_in"][e])
                y[t] += gates[t, j] * (h @ p["W_out"][e])
    return y.reshape(B, T, D), dropped / (len(tokens) * K)


def main():
    assert jax.device_count() == 8, jax.devices()
    moe = MoE(D, M, E, K, name="moe")
    params = moe.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (B, T, D))
    (ref, _), (g_ref, gx_ref) = objective(MoE(D, M, E, K, impl="dense", name="moe"))(params, x)
    out = {}
    for shape in MESHES:
        mesh = make_mesh(**dict(zip(AXES, shape)))
        p = jax.device_put(params, param_shardings(moe.spec(), mesh))
        xs = jax.device_put(x, NamedSharding(mesh, P(BATCH)))
        ep = pin_for_mesh(moe, mesh).f  # the mixture, dispatched over the expert axis
        assert ep.routing is not None
        (val, dropped), (g, gx) = objective(ep)(p, xs)
        capped = pin_for_mesh(MoE(D, M, E, K, capacity=1.0, name="moe"), mesh).f
        y_cap = jax.jit(jax.vmap(capped.forward, in_axes=(None, 0)))(p, xs)
        S = math.prod(mesh.shape[a] for a in BATCH)
        y_np, dropped_np = numpy_reference(params, x, S, mesh.shape["expert"], 1.0)
        out[str(shape)] = {
            "value_err": abs(float(val) - float(ref)),
            "grad_err": max(float(jnp.abs(g[k] - g_ref[k]).max()) for k in g),
            "x_grad_err": float(jnp.abs(gx - gx_ref).max()),
            "grad_scale": max(float(jnp.abs(v).max()) for v in g.values()),
            "dropped": float(dropped),
            "capacity_err": float(np.abs(np.asarray(y_cap[0]) - y_np).max()),
            "capacity_dropped": float(jnp.mean(y_cap[1]["moe.dropped"])),
            "capacity_dropped_np": dropped_np,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
