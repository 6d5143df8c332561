"""The jitted train and eval steps.

    train_step: (θ, s, x_MbT1) ↦ (θ', s', {loss, grad_norm, (aux_loss, expert_load)})
        g = (1/M) Σ_m ∇_θ J(θ, x_m)          one lax.scan over the M micro-batches
        J = loss (+ the auxiliary losses of a mixture of experts: ``loss.objective``)
        θ', s' = optimizer.update(g, s, θ)

A batch of M micro-batches of b windows gives the gradient of one batch of M·b
windows (the mean of equal-sized means; of packed windows, weighted by the targets each
trains), with the activations of b at a time. θ are
float32 master weights; with ``compute_dtype="bfloat16"`` the forward and backward
run on a bf16 copy (the layers keep norms, softmax and logits in f32, and the loss
is f32). θ and s are donated: the update reuses their buffers.

    eval_step: (θ, x_BT1, mask_BT) ↦ Σ mask · nll   (nats, float32)

On CPU the train step unrolls the scan over layers (see ``unrolled``), and the
training entry points make glibc keep the memory XLA frees (``process.py``): the
two together make a CPU step about 25% faster; the norms' closed-form VJP
(``jaxformer.layers.norm``) another 5–8%. ``scripts/bench_train.py`` measures it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from ..core import Map, Repeat
from . import loss as L


def unrolled(model: Map) -> Map:
    """``model`` with each ``Repeat`` unrolled, on CPU (the same map and params).

    XLA:CPU copies every activation a scanned block saves for the backward pass into an
    [L, …] stack and back; straight-line code keeps them in place (~10% of a step) for
    compile time that grows with L (``BENCHMARKS.md``). Accelerators keep the scan.
    """
    if jax.default_backend() != "cpu":
        return model
    for path, m in list(model.walk()):
        if isinstance(m, Repeat) and not m.unrolled:
            model = model.replace(path, dataclasses.replace(m, unrolled=True))
    return model


def loss_and_grad(model: Map, compute_dtype: str = "float32", trained=None):
    """(θ, x_MbT1) ↦ (metrics, ∇_θ J) of the M·b windows, accumulated over the M
    micro-batches: J the objective (``loss.objective``), metrics its parts ({loss, …}).
    ``trained`` (θ ↦ labels "trained" | "frozen", ``optim.labels``): the gradient is taken
    of the trained parameters alone, the frozen ones' is 0 (LoRA: no backward pass into
    the base weights, whose gradients would be computed only to be dropped)."""
    model = unrolled(model)
    J = lambda p, x: L.objective(model, p, x, compute_dtype)
    grad_fn = jax.grad(J, has_aux=True) if trained is None else _grad_of_trained(J, trained)

    def loss_and_grad(params, batch_MbT1):
        M = jax.tree.leaves(batch_MbT1)[0].shape[0]
        first = jax.tree.map(lambda a: a[0], batch_MbT1)
        flip = lambda grads, metrics: (metrics, grads)
        if M == 1:
            return flip(*grad_fn(params, first))

        def accumulate(carry, xw):
            x, w = xw
            add = lambda c, g: c + w * g
            return jax.tree.map(add, carry, flip(*grad_fn(params, x))), None

        zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, params, first))
        total, _ = jax.lax.scan(accumulate, flip(*zero), (batch_MbT1, shares(batch_MbT1, M)))
        return jax.tree.map(lambda a: a / M, total)

    return loss_and_grad


def _grad_of_trained(J, trained):
    """∇_θ J with the frozen leaves held constant (their gradient: zeros)."""

    def grad_fn(params, x):
        leaves, tree = jax.tree.flatten(params)
        keep = [label == "trained" for label in jax.tree.leaves(trained(params))]

        def fill(parts, rest):  # the trained leaves from ``parts``, the others from ``rest``
            it = iter(parts)
            return tree.unflatten([next(it) if k else r for k, r in zip(keep, rest)])

        J_trained = lambda t, x: J(fill(t, leaves), x)
        g, metrics = jax.grad(J_trained, has_aux=True)([a for a, k in zip(leaves, keep) if k], x)
        return fill(g, [jnp.zeros_like(a) for a in leaves]), metrics

    return grad_fn


def shares(batch, M: int) -> jax.Array:
    """[M]: each micro-batch's weight in (1/M) Σ_m w_m ∇J_m. 1 for windows of ids (equal
    counts); for packed windows M·n_m/n, n_m the targets micro-batch m trains, so that the
    mean of their means is the mean over all n targets."""
    if not isinstance(batch, L.Windows):
        return jnp.ones(M, jnp.float32)
    n_m = jnp.sum(batch.trained, axis=(1, 2)).astype(jnp.float32)
    return M * n_m / jnp.maximum(jnp.sum(n_m), 1.0)


def make_train_step(
    model: Map, optimizer: optax.GradientTransformation, compute_dtype: str, trained=None
):
    """The jitted step; the batch is [M, b, T+1] int32 (M micro-batches of b windows), or
    packed ``Windows`` of those leading axes. ``trained``: as ``loss_and_grad``'s."""
    grad_fn = loss_and_grad(model, compute_dtype, trained)

    def step(params, opt_state, batch_MbT1):
        metrics, grads = grad_fn(params, batch_MbT1)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        new = optax.apply_updates(params, updates)
        if trained is not None:  # a frozen leaf is its old buffer, not θ + 0 written anew
            frozen = jax.tree.map(lambda label: label != "trained", trained(params))
            new = jax.tree.map(lambda f, old, p: old if f else p, frozen, params, new)
        return new, opt_state, metrics | {"grad_norm": optax.tree.norm(grads)}

    return jax.jit(step, donate_argnums=(0, 1))


def make_eval_step(model: Map, compute_dtype: str):
    """The jitted sum of masked next-token NLL over a batch: [B, T+1], [B, T] → scalar."""

    def eval_step(params, windows_BT1, mask_BT):
        nll = L.batch_nll(model, params, windows_BT1, compute_dtype)
        return jnp.sum(jnp.where(mask_BT, nll, 0.0))

    return jax.jit(eval_step)
