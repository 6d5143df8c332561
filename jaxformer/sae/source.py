"""Where an SAE reads a model, and what splicing it in costs the model.

    sites(model)                                 the point names an SAE can read: "embed",
                                                 "blocks.<l>.<key>" (resid_mid, resid_post,
                                                 attn, mlp, ln1, ...)
    activations(model, params, tokens_BT, at)    the point ``at`` of each token: [B·T, d]
    ce_losses(model, params, sae, sae_params, windows_BT1, at)
                                                 (CE clean, CE with x̂ spliced in at ``at``,
                                                 CE with ``at`` zero-ablated), nats/token
    ce_recovered(...)                            (CE_zero − CE_sae) / (CE_zero − CE_clean)

A point name is flat, as ``model.points()`` names it: ``blocks.1.resid_post`` is layer 1's
residual stream after its MLP. The activations come from a selective trace (that point
alone; nothing past it is computed), and the SAE is spliced in (``core.splice``): the
model with x ↦ x̂(x) at the point, or with the point zero-ablated (``circuits.edits``),
each a composite of its own, checked against the point's space when it is built.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..circuits.edits import ablate, reconstruct
from ..core import Map, Real, space_at, splice, tokenwise, with_splice
from ..models import layout as N
from ..models import validate_tokens
from ..train.loss import token_nll
from .maps import SAE


@functools.cache
def sites(model: Map) -> dict[str, tuple[str, int | None, int]]:
    """{point name: (the name, its layer or None, the point's width d)} of every point an SAE
    can read and be spliced in at: a map's output in ℝ^{T×d} (the logits excepted)."""
    out = {}
    for name in model.points():
        try:
            S = space_at(model, name)
        except ValueError:  # an internal point of a layer (attn.pattern, ln1.scale)
            continue
        if S.same_as(Real("T", S.shape[-1])) and name != N.UNEMBED:
            head, _, rest = name.partition(".")
            layer = rest.partition(".")[0]
            out[name] = (
                name,
                int(layer) if head == N.BLOCKS and layer.isdigit() else None,
                S.shape[-1],
            )
    return out


def site(model: Map, at: str) -> tuple[str, int | None, int]:
    """(name, layer, width) of the point ``at``; a ValueError naming it and the choices."""
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


@functools.cache
def _reader(model: Map, at: str):
    def one(params, x_T):
        return model.trace(params, x_T, points=[at])[1][at]  # stops after the point

    def batch(params, tokens_BT):
        a = jax.vmap(one, in_axes=(None, 0))(params, tokens_BT)
        return a.reshape(-1, a.shape[-1]).astype(jnp.float32)

    return jax.jit(batch)


def activations(model: Map, params, tokens_BT, at: str) -> jax.Array:
    """The point ``at`` of every token of a batch, in float32.   [B, T] ids → [B·T, d]."""
    site(model, at)
    tokens = validate_tokens(model, tokens_BT, "tokens_BT", ndim=(2,))
    return _reader(model, at)(params, jnp.asarray(tokens))


@functools.cache
def _ce(model: Map, at: str, sae: SAE):
    g = tokenwise(sae)
    with_sae = splice(model, at, reconstruct(g))
    zeroed = splice(model, at, ablate(space_at(model, at)))

    def one(params, sae_params, w):
        x_T, y_T = w[:-1], w[1:]
        ce = lambda logits: token_nll(logits, y_T).mean()
        spliced = with_splice(params, at, {sae.name: sae_params})
        return ce(model(params, x_T)), ce(with_sae(spliced, x_T)), ce(zeroed(params, x_T))

    def batch(params, sae_params, windows):
        return [
            c.mean() for c in jax.vmap(one, in_axes=(None, None, 0))(params, sae_params, windows)
        ]

    return jax.jit(batch)


def ce_losses(model: Map, params, sae: SAE, sae_params, windows_BT1, at: str):
    """(CE clean, CE with the SAE's x̂ in place of the point ``at``, CE with it zeroed), each
    the mean next-token NLL in nats over the windows' last T ids.   [B, T+1] ids → 3 scalars."""
    _, _, width = site(model, at)
    if width != sae.d:
        raise ValueError(f"the SAE reads d={sae.d}, but {at} has width {width}; train one for it")
    windows = np.asarray(windows_BT1)
    validate_tokens(model, windows[:, :-1], "windows_BT1", ndim=(2,))  # what the model reads
    if windows.size and windows.max() >= model.domain.n:  # the last ids are targets only
        raise ValueError(f"windows_BT1: token id {int(windows.max())} is outside the vocabulary")
    return _ce(model, at, sae)(params, sae_params, jnp.asarray(windows_BT1, jnp.int32))


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
