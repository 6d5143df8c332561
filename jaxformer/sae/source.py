"""Where an SAE reads a model, and what splicing it in costs the model.

    sites(model)                                 the point names an SAE can read: "embed",
                                                 "blocks.<l>.<key>" (resid_mid, resid_post,
                                                 attn, mlp, ln1, ...)
    activations(model, params, tokens_BT, at)    the point ``at`` of each token: [B·T, d]
    ce_losses(model, params, sae, sae_params, windows_BT1, at)
                                                 (CE clean, CE with x̂ spliced in at ``at``,
                                                 CE with ``at`` zero-ablated), nats/token
    ce_recovered(...)                            (CE_zero − CE_sae) / (CE_zero − CE_clean)

A point name is flat: ``blocks.1.resid_post`` is layer 1's residual stream after its MLP,
``points["blocks"]["resid_post"][1]`` of the model's trace (the full trace, for now: a
selective one and ``splice`` are to replace it behind these two functions). Splicing is
activation patching (``circuits.patching``): the output of the sub-map at the point is
replaced by the SAE's reconstruction at that layer alone (a one-hot mask over the layers).
Since x̂ at layer l depends only on the clean point at layer l, which nothing downstream
changes, this is the SAE spliced in.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..circuits.patching import patched, with_patch
from ..core import Map
from ..models import layout as N
from ..models import validate_tokens
from ..train.loss import token_nll
from .maps import SAE


@functools.cache
def sites(model: Map) -> dict[str, tuple[str, int | None, int]]:
    """{point name: (the sub-map's path, its layer or None, the point's width d)} of every
    point of the trace that a sub-map outputs (so that it can be patched)."""
    params = jax.eval_shape(model.init, jax.random.key(0))
    _, points = jax.eval_shape(model.trace, params, jax.ShapeDtypeStruct((2,), jnp.int32))
    paths = {p.removeprefix(f"{model.name}.") for p, _ in model.walk()}
    out = {}
    for key, s in points.items():
        if key == N.BLOCKS and isinstance(s, dict):  # {key: [L, T, d]}, stacked over layers
            for block, a in s.items():
                if f"{N.BLOCKS}.{block}" in paths and len(a.shape) == 3:
                    for l in range(a.shape[0]):
                        out[f"{N.BLOCKS}.{l}.{block}"] = (f"{N.BLOCKS}.{block}", l, a.shape[-1])
        elif key in paths and key != N.UNEMBED and len(s.shape) == 2:  # [T, d]
            out[key] = (key, None, s.shape[-1])
    return out


def site(model: Map, at: str) -> tuple[str, int | None, int]:
    """(path, layer, width) of the point ``at``; a ValueError naming it and the choices."""
    known = sites(model)
    if at not in known:
        some = [n for n in known if ".0." in n or "." not in n]
        raise ValueError(
            f"--at {at!r} is not a point of this model; choose one of {', '.join(some)} "
            f"(layers 0 … {_layers(known) - 1} for blocks.<l>.*)"
        )
    return known[at]


def _layers(known) -> int:
    return 1 + max((l for _, l, _ in known.values() if l is not None), default=-1)


def _point(points, path, layer):
    """The point at ``path`` ("embed", or "blocks.<key>" and its layer) of a trace."""
    if layer is None:
        return points[path]
    return points[N.BLOCKS][path.removeprefix(f"{N.BLOCKS}.")][layer]


@functools.cache
def _reader(model: Map, path: str, layer: int | None):
    def one(params, x_T):
        return _point(model.trace(params, x_T)[1], path, layer)

    def batch(params, tokens_BT):
        a = jax.vmap(one, in_axes=(None, 0))(params, tokens_BT)
        return a.reshape(-1, a.shape[-1]).astype(jnp.float32)

    return jax.jit(batch)


def activations(model: Map, params, tokens_BT, at: str) -> jax.Array:
    """The point ``at`` of every token of a batch, in float32.   [B, T] ids → [B·T, d]."""
    path, layer, _ = site(model, at)
    tokens = validate_tokens(model, tokens_BT, "tokens_BT", ndim=(2,))
    return _reader(model, path, layer)(params, jnp.asarray(tokens))


@functools.cache
def _ce(model: Map, path: str, layer: int | None, sae: SAE):
    m = patched(model, path)

    def one(params, sae_params, w):
        x_T, y_T = w[:-1], w[1:]
        logits, points = model.trace(params, x_T)
        a = _point(points, path, layer)
        xhat = sae.apply(sae_params, a.astype(jnp.float32)).astype(a.dtype)
        if layer is None:
            value, mask = xhat, jnp.ones((*a.shape[:-1], 1), a.dtype)
        else:
            L = points[N.BLOCKS][path.removeprefix(f"{N.BLOCKS}.")].shape[0]
            value = jnp.zeros((L, *a.shape), a.dtype).at[layer].set(xhat)
            mask = jnp.zeros((L, *a.shape[:-1], 1), a.dtype).at[layer].set(1)
        run = lambda v: m(with_patch(params, path, v, mask), x_T)
        ce = lambda z: token_nll(z, y_T).mean()
        return ce(logits), ce(run(value)), ce(run(jnp.zeros_like(value)))

    def batch(params, sae_params, windows):
        return [
            c.mean() for c in jax.vmap(one, in_axes=(None, None, 0))(params, sae_params, windows)
        ]

    return jax.jit(batch)


def ce_losses(model: Map, params, sae: SAE, sae_params, windows_BT1, at: str):
    """(CE clean, CE with the SAE's x̂ in place of the point ``at``, CE with it zeroed), each
    the mean next-token NLL in nats over the windows' last T ids.   [B, T+1] ids → 3 scalars."""
    path, layer, width = site(model, at)
    if width != sae.d:
        raise ValueError(f"the SAE reads d={sae.d}, but {at} has width {width}; train one for it")
    windows = np.asarray(windows_BT1)
    validate_tokens(model, windows[:, :-1], "windows_BT1", ndim=(2,))  # what the model reads
    if windows.size and windows.max() >= model.domain.n:  # the last ids are targets only
        raise ValueError(f"windows_BT1: token id {int(windows.max())} is outside the vocabulary")
    return _ce(model, path, layer, sae)(params, sae_params, jnp.asarray(windows_BT1, jnp.int32))


def ce_recovered(model: Map, params, sae: SAE, sae_params, windows, at: str, batch: int = 32):
    """{ce_clean, ce_sae, ce_zero, ce_recovered} over ``windows`` [M, T+1], ``batch`` at a
    time: ce_recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean), 1 for a perfect SAE."""
    windows = np.asarray(windows)
    if windows.ndim != 2 or len(windows) == 0:
        raise ValueError(f"windows must be [M, T+1] token ids, got shape {windows.shape}")
    sums, n = np.zeros(3), 0
    for i in range(0, len(windows), batch):
        w = windows[i : i + batch]
        sums += len(w) * np.array(
            [float(c) for c in ce_losses(model, params, sae, sae_params, w, at)]
        )
        n += len(w)
    clean, spliced, zero = sums / n
    return {
        "ce_clean": clean, "ce_sae": spliced, "ce_zero": zero,
        "ce_recovered": (zero - spliced) / (zero - clean) if zero != clean else float("nan"),
    }  # fmt: skip
