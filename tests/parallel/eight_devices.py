"""Run by test_parallel_mesh.py in a subprocess whose XLA_FLAGS give 8 CPU devices.

    eight_devices.py gpt2:8,1,1,1 gpt2:2,2,1,2 mixtral:2,2,2,1 ...

For each family it trains two steps of a tiny model with the plain library step on one
device; then, for each of its meshes ((data, fsdp, expert, tensor), or (data, fsdp,
tensor)), two steps with the sharded step from the sharded init. It prints one JSON line:
the losses, the params' errors against the one-device run, and each parameter's sharding
(PartitionSpec, shard shapes).
"""

import json
import sys

import jax
import numpy as np

from jaxformer import Config, build
from jaxformer.parallel import AXES, global_batch, init_state, make_mesh
from jaxformer.parallel.mesh import POSITIONAL
from jaxformer.train.config import TrainConfig
from jaxformer.train.optim import optimizer
from jaxformer.train.sharded import make_sharded_step
from jaxformer.train.step import make_train_step

STEPS = 2
CONFIGS = {
    "gpt2": Config(vocab_size=64, context=16, n_layers=2, d_model=32, n_heads=8),
    "llama": Config("llama", 64, 16, 2, 32, n_heads=8, n_kv_heads=4, d_mlp=64),
    "mixtral": Config("mixtral", 64, 16, 2, 32, n_heads=8, n_kv_heads=4, d_mlp=32),  # E=8, k=2
}


def flat(tree) -> dict:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree.leaves_with_path(tree)}


def run(family: str, meshes: list[tuple[int, ...]]) -> dict:
    model = build(CONFIGS[family])
    opt = optimizer(TrainConfig(lr=3e-4, warmup_steps=0, steps=10))
    key = jax.random.key(0)
    x = np.random.default_rng(0).integers(0, 64, (2, 8, 17), dtype=np.int32)  # M=2, b=8, T+1

    theta = model.init(key)
    ref_init = flat(theta)  # a host copy: the step donates θ
    step = make_train_step(model, opt, "float32")
    s, ref_loss, ref_aux = opt.init(theta), [], []
    for _ in range(STEPS):
        theta, s, m = step(theta, s, x)
        ref_loss.append(float(m["loss"]))
        ref_aux.append(float(m.get("aux_loss", 0.0)))
    ref_final = flat(theta)

    out = {"ref_loss": ref_loss, "ref_aux": ref_aux, "meshes": {}}
    for shape in meshes:
        mesh = make_mesh(**dict(zip(AXES if len(shape) == 4 else POSITIONAL, shape)))
        params, opt_state = init_state(model, opt, key, mesh)
        init_err = max(np.abs(v - ref_init[k]).max() for k, v in flat(params).items())
        sharded = make_sharded_step(model, opt, mesh)
        batch = global_batch(x, mesh)
        losses, aux, dropped = [], [], []
        for _ in range(STEPS):
            params, opt_state, m = sharded(params, opt_state, batch)
            losses.append(float(m["loss"]))
            aux.append(float(m.get("aux_loss", 0.0)))
            dropped.append(float(m.get("dropped", 0.0)))
        got = flat(params)
        mu = opt_state[1][0].mu  # clip, then (adam, masked decay, schedule): Adam's first moment
        out["meshes"][str(shape)] = {
            "init_err": float(init_err),
            "loss": losses,
            "aux": aux,
            "dropped": dropped,
            "moved": max(float(np.abs(v - ref_init[k]).max()) for k, v in got.items()),
            "param_err": {k: float(np.abs(v - ref_final[k]).max()) for k, v in got.items()},
            "specs": {
                jax.tree_util.keystr(k): {
                    "spec": str(v.sharding.spec),
                    "shape": list(v.shape),
                    "shards": sorted({tuple(s.data.shape) for s in v.addressable_shards}),
                }
                for k, v in jax.tree.leaves_with_path(params)
            },
            "mu_specs_match": all(
                a.sharding.spec == b.sharding.spec
                for a, b in zip(jax.tree.leaves(mu), jax.tree.leaves(params))
            ),
        }
    return out


def main():
    assert jax.device_count() == 8, jax.devices()
    todo: dict[str, list] = {}
    for arg in sys.argv[1:]:
        family, mesh = arg.split(":")
        todo.setdefault(family, []).append(tuple(map(int, mesh.split(","))))
    print(json.dumps({family: run(family, meshes) for family, meshes in todo.items()}))


if __name__ == "__main__":
    main()
