"""Attention's cached form, for generation (a face of ``Attention``, beside it).

    decode   (x_Td, positions, cache) ↦ (y_Td, cache'): the chunk's k, v written at its
             positions; the query at p attends to the slots s ≤ p
    k is stored as [G, k, S] (as the scores q Kᵀ read it: XLA:CPU would otherwise
    transpose the whole cache at every token), v as [G, S, k].

The cache of a windowed layer is a ring of ``window`` slots (when the cache would be
longer): position p is written at slot p mod window beside its absolute position, and the
mask reads the stored positions, so its memory does not grow with the generated length.

``decode_layout`` gives the weights as the decode loop reads them, laid out once before it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

QKV = "W_QKV"  # the decode layout's fused projection (``decode_layout``)


class CachedAttention:
    """The cached form of ``Attention`` (its fields: H, G, k, d, window, causal)."""

    matrices = (QKV, "W_O")  # in the decode layout: [d, (H + 2G)·k] and [H·k, d]

    def ring(self, S: int) -> bool:
        """Whether a cache of S slots is a ring of ``window`` slots (the window is shorter)."""
        return self.window is not None and self.window < S

    def cache_spec(self, S):
        """k and v of the G key/value heads at S slots: k as [G, k, S] (the scores q Kᵀ read
        it as the matrix product wants it: XLA:CPU would otherwise transpose the whole cache
        at every token), v as [G, S, k]; for a window w < S a ring of w slots, [G, w, k]
        each, and ``pos`` [w] (int32: 1 + the position each slot holds, 0 empty)."""
        G, k = self.kv_heads, self.k
        if self.ring(S):
            w = self.window
            return {"k": (G, w, k), "v": (G, w, k), "pos": jax.ShapeDtypeStruct((w,), jnp.int32)}
        return {"k": (G, k, S), "v": (G, S, k)}

    def decode_layout(self, params):
        """Its params as the decode loop reads them, laid out once before the loop: W_Q, W_K,
        W_V as one matrix [d, (H + 2G)·k], a plain matrix-vector product for XLA:CPU (the
        [H, d, k] tensors it would transpose at every token), and W_O [H, k, d] as the
        matrix [H·k, d] it is (a reshape; ``out`` reads either)."""
        W = jnp.concatenate([params["W_Q"], params["W_K"], params["W_V"]])  # [H + 2G, d, k]
        rest = {n: v for n, v in params.items() if n not in ("W_Q", "W_K", "W_V", "W_O")}
        W_O = params["W_O"].reshape(self.H * self.k, self.d)
        return rest | {QKV: jnp.swapaxes(W, 0, 1).reshape(self.d, -1), "W_O": W_O}

    def decode(self, params, cache, x_Td, positions, layer=()):
        """Write the chunk's k, v at its (contiguous) ``positions`` in this layer's slice of
        the cache; the query at position p attends to the slots s ≤ p (later slots hold
        padding or nothing yet, whatever they contain). A ring cache: ``decode_ring``."""
        if not self.causal:
            raise NotImplementedError(f"{self.name}: a non-causal attention cannot be decoded")
        if "pos" in cache:
            return self.decode_ring(params, cache, x_Td, positions, layer)
        q_HTk, k_GTk, v_GTk = self.qkv(params, x_Td, positions)

        def write(C, new, at):
            new = new.astype(C.dtype).reshape((1,) * len(layer) + new.shape)
            return jax.lax.dynamic_update_slice(C, new, (*layer, *at))

        p = positions[0]
        k_new = jnp.swapaxes(k_GTk, 1, 2)  # [G, k, T]
        cache = {"k": write(cache["k"], k_new, (0, 0, p)), "v": write(cache["v"], v_GTk, (0, p, 0))}
        K_GkS, V_GSk = cache["k"][tuple(layer)], cache["v"][tuple(layer)]
        s_HTS = self.scores(q_HTk, K_GkS.astype(q_HTk.dtype), keys_kS=True)
        seen_TS = self.visible(positions, jnp.arange(V_GSk.shape[1]))
        A_HTS = jax.nn.softmax(jnp.where(seen_TS, s_HTS, -jnp.inf), axis=-1)
        return self.out(params, self.mix(A_HTS, V_GSk.astype(x_Td.dtype))), cache

    def decode_ring(self, params, cache, x_Td, positions, layer=()):
        """The chunk at ``positions`` (non-decreasing: a repeated position is padding, never
        written) against a ring of w slots. The query at p sees the stored slots whose
        position q satisfies p − w < q < positions[0] (older than the chunk: a stale later
        entry is invisible) and the chunk's own keys j ≤ its index with p − w < p_j. Then the
        chunk's new positions are written at p mod w (of a chunk longer than w, its last w)."""
        w, T = self.window, x_Td.shape[0]
        q_HTk, k_GTk, v_GTk = self.qkv(params, x_Td, positions)
        at = tuple(layer)
        K_GWk, V_GWk, pos_W = cache["k"][at], cache["v"][at], cache["pos"][at] - 1
        old_TW = (pos_W >= 0) & (pos_W < positions[0]) & (pos_W > positions[:, None] - w)
        i = jnp.arange(T)
        new_TT = (i[None, :] <= i[:, None]) & (positions[None, :] > positions[:, None] - w)
        K = jnp.concatenate([K_GWk.astype(q_HTk.dtype), k_GTk], axis=1)
        V = jnp.concatenate([V_GWk.astype(x_Td.dtype), v_GTk], axis=1)
        s_HTS = self.scores(q_HTk, K)
        A_HTS = jax.nn.softmax(jnp.where(jnp.concatenate([old_TW, new_TT], 1), s_HTS, -jnp.inf), -1)
        y = self.out(params, self.mix(A_HTS, V))
        fresh = jnp.concatenate([jnp.ones(1, bool), positions[1:] > positions[:-1]])
        fresh = fresh & (positions > positions[-1] - w)
        slot_T = jnp.where(fresh, positions % w, w)  # slot w: out of range, dropped

        def write(C, new):
            C_l = C[at].at[..., slot_T, :].set(new.astype(C.dtype), mode="drop")
            return jax.lax.dynamic_update_slice(C, C_l[(None,) * len(layer)], (*layer, 0, 0, 0))

        P_l = cache["pos"][at].at[slot_T].set(positions + 1, mode="drop")
        P = jax.lax.dynamic_update_slice(cache["pos"], P_l[(None,) * len(layer)], (*layer, 0))
        return y, {"k": write(cache["k"], k_GTk), "v": write(cache["v"], v_GTk), "pos": P}
