"""A training process for test_parallel_processes.py (run as a script, not collected).

    mp_worker.py OUT --coordinator H:P --num-processes N --process-id I --mesh 1,2,2 --save DIR
        one of N processes: sharded init, steps on the mesh over all processes' devices,
        reading only this process's part of each batch; saves (params, opt_state) with
        orbax, every process writing its own shards, into DIR/checkpoints/<steps>/
    mp_worker.py OUT --restore DIR
        the reference: one process, one device, the plain library step on the whole
        batch; then restores DIR's checkpoint onto its one device (orbax, target shardings)

It writes a JSON report to OUT.<process id> (losses, the sample indices read, errors).
"""

import argparse
import json

import numpy as np

STEPS, B, M, T = 3, 8, 2, 16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--coordinator")
    ap.add_argument("--num-processes", type=int)
    ap.add_argument("--process-id", type=int)
    ap.add_argument("--mesh", default="1,1,1")
    ap.add_argument("--save")
    ap.add_argument("--restore")
    a = ap.parse_args()

    from jaxformer.parallel import initialize

    initialize(a.coordinator, a.num_processes, a.process_id, timeout_s=120)

    import jax

    from jaxformer import Config, build
    from jaxformer.train.config import TrainConfig
    from jaxformer.train.optim import optimizer
    from jaxformer.train.sampler import BatchSampler

    model = build(Config(vocab_size=64, context=T, n_layers=2, d_model=32, n_heads=8))
    opt = optimizer(TrainConfig(lr=3e-4, warmup_steps=0, steps=10))
    tokens = np.random.default_rng(0).integers(0, 64, 4000).astype(np.int32)
    key = jax.random.key(0)
    report = {"loss": [], "indices": []}
    if a.restore is None:
        params, opt_state = sharded_run(a, model, opt, key, tokens, report, BatchSampler)
        save(a.save, params, opt_state)
    else:
        reference_run(a, model, opt, key, tokens, report, BatchSampler)
    with open(f"{a.out}.{jax.process_index()}", "w") as f:
        json.dump(report, f)


def sharded_run(a, model, opt, key, tokens, report, BatchSampler):
    from jaxformer import parallel as par

    mesh = par.make_mesh(*map(int, a.mesh.split(",")))
    i, n = par.data_shard(mesh)
    sampler = BatchSampler(tokens.size, T, B, seed=0, process_index=i, process_count=n)
    params, opt_state = par.init_state(model, opt, key, mesh)
    from jaxformer.train.sharded import make_sharded_step

    step = make_sharded_step(model, opt, mesh)
    for k in range(STEPS):
        local = sampler.batch(tokens, k).reshape(M, B // (n * M), T + 1)
        params, opt_state, m = step(params, opt_state, par.global_batch(local, mesh))
        report["loss"].append(float(m["loss"]))
        report["indices"].append(sampler.indices(k).tolist())
    report["shards"] = {i: n}
    return params, opt_state


def reference_run(a, model, opt, key, tokens, report, BatchSampler):
    import jax

    from jaxformer.train.step import make_train_step

    sampler = BatchSampler(tokens.size, T, B, seed=0)
    params = model.init(key)
    opt_state = opt.init(params)
    step = make_train_step(model, opt, "float32")
    for k in range(STEPS):
        x = sampler.batch(tokens, k).reshape(M, B // M, T + 1)
        params, opt_state, m = step(params, opt_state, x)
        report["loss"].append(float(m["loss"]))
        report["indices"].append(sampler.indices(k).tolist())
    got, got_opt, meta = restore(a.restore, model, opt)
    err = lambda x, y: max(float(np.abs(np.asarray(u) - np.asarray(v)).max()) for u, v in zip(x, y))
    report["restored_step"] = meta["step"]
    report["restore_err"] = err(jax.tree.leaves(got), jax.tree.leaves(params))
    report["restore_opt_err"] = err(jax.tree.leaves(got_opt), jax.tree.leaves(opt_state))


def save(run_dir, params, opt_state):
    """The library's checkpoint layout, written by every process (each its own shards)."""
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(f"{run_dir}/checkpoints")
    manager.save(
        STEPS,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            meta=ocp.args.JsonSave({"step": STEPS}),
        ),
    )
    manager.wait_until_finished()
    manager.close()


def restore(run_dir, model, opt):
    """The checkpoint, onto this process's one device: targets with shardings."""
    import orbax.checkpoint as ocp

    from jaxformer import parallel as par

    params = par.abstract_params(model, par.make_mesh(1, 1, 1))
    opt_state = par.abstract_opt_state(opt, params)
    options = ocp.CheckpointManagerOptions(read_only=True)
    manager = ocp.CheckpointManager(f"{run_dir}/checkpoints", options=options)
    r = manager.restore(
        manager.latest_step(),
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(params),
            opt_state=ocp.args.StandardRestore(opt_state),
            meta=ocp.args.JsonRestore(),
        ),
    )
    manager.close()
    return r["params"], r["opt_state"], r["meta"]


if __name__ == "__main__":
    main()
