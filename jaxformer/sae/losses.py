"""What an SAE is trained on and measured by, over a batch x ∈ R^{B×d}.

    mse        (1/B) Σ_b ‖x_b − x̂_b‖²
    l1         (1/B) Σ_b Σ_i z_bi ‖W_dec,i‖                 (relu's sparsity penalty)
    l0         (1/B) Σ_b #{i : z_bi ≠ 0}                     (jumprelu's, through ``step``)
    fve        1 − Σ_b ‖x_b − x̂_b‖² / Σ_b ‖x_b − x̄‖²         x̄ the batch mean
    aux_k      min(1, D/k_aux) · Σ_b ‖e_b − ê_b‖² / Σ_b ‖e_b − ē‖²

aux-k (Gao et al. 2024, §A.2) revives dead latents: e = x − x̂ is the residual the
live latents leave (no gradient through it), ê = TopK_{k_aux}(pre restricted to the D
dead latents) W_dec its reconstruction by the dead ones alone, the normalised MSE as in
the paper; the factor min(1, D/k_aux) (sae-lens') fades it out as the dead revive, so it
is 0 with none dead. Each objective is (loss, parts) with the parts as metrics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .maps import SAE, step


def mse(x_Bd, xhat_Bd):
    """(1/B) Σ_b ‖x_b − x̂_b‖²."""
    return jnp.sum((x_Bd - xhat_Bd) ** 2, axis=-1).mean()


def fve(x_Bd, xhat_Bd):
    """The fraction of variance explained, 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²."""
    err = jnp.sum((x_Bd - xhat_Bd) ** 2)
    var = jnp.sum((x_Bd - x_Bd.mean(0)) ** 2)
    return 1.0 - err / var


def l0(z_Bn):
    """Active latents per token, (1/B) Σ_b #{i : z_bi ≠ 0}."""
    return jnp.sum(z_Bn != 0, axis=-1).mean()


def aux_k(sae: SAE, params, x_Bd, xhat_Bd, pre_Bn, dead_n, k_aux: int):
    """The aux-k loss: the dead latents' best k_aux, fitted to the live ones' residual."""
    e = jax.lax.stop_gradient(x_Bd - xhat_Bd)
    n_dead = jnp.sum(dead_n)
    k_aux = min(k_aux, sae.n)
    u = jnp.where(dead_n, pre_Bn, -jnp.inf)
    vals, idx = jax.lax.top_k(u, k_aux)
    z = jnp.zeros_like(pre_Bn)
    rows = jnp.arange(pre_Bn.shape[0])[:, None]
    z = z.at[rows, idx].set(jax.nn.relu(jnp.where(jnp.isfinite(vals), vals, 0.0)))
    ehat = z @ params["W_dec"]
    nmse = jnp.sum((e - ehat) ** 2) / jnp.maximum(jnp.sum((e - e.mean(0)) ** 2), 1e-12)
    return jnp.minimum(1.0, n_dead / k_aux) * nmse


def objective(sae: SAE, params, x_Bd, dead_n, coeffs: dict):
    """(loss, parts) of the variant: mse + ``l1``·l1 (relu), + ``l0``·l0 (jumprelu), or
    + ``aux``·aux_k (topk, with ``k_aux``)."""
    pre = sae.pre(params, x_Bd)
    z = sae.activate(params, pre)
    xhat = sae.decode_latents(params, z)
    rec = mse(x_Bd, xhat)
    parts = {"mse": rec, "l0": l0(z), "fve": fve(x_Bd, xhat)}
    if sae.variant == "relu":
        norms = jnp.linalg.norm(params["W_dec"], axis=-1)
        parts["l1"] = jnp.sum(z * norms, axis=-1).mean()
        loss = rec + coeffs["l1"] * parts["l1"]
    elif sae.variant == "jumprelu":
        theta = jnp.exp(params["log_threshold"])
        parts["l0_penalty"] = jnp.sum(step(pre, theta, sae.bandwidth), axis=-1).mean()
        loss = rec + coeffs["l0"] * parts["l0_penalty"]
    else:
        # computed only when some latent is dead (it is 0 otherwise, and costs a top-k)
        aux = lambda: aux_k(sae, params, x_Bd, xhat, pre, dead_n, coeffs["k_aux"])
        parts["aux"] = jax.lax.cond(jnp.any(dead_n), aux, lambda: jnp.zeros((), rec.dtype))
        loss = rec + coeffs["aux"] * parts["aux"]
    parts["fired"] = jnp.any(z != 0, axis=0)
    return loss, parts
