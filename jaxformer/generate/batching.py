"""Continuous batching: many prompts through a fixed number of slots, greedy.

    queue of prompts ─▶ slots (B rows of one cache) ─decode a chunk of C tokens─▶ …
    a row that is done (a stop token, or max_new_tokens out) hands its slot to the next
    waiting prompt, prefilled into that row of the cache, between two chunks

Each row keeps its own position: the row that holds prompt p decodes p's i-th new token at
position n_p − 1 + i, exactly as ``generate`` does for p alone, so the ids are those of
``generate(model, params, p, max_new_tokens, temperature=0)``, prompt by prompt (a row's
padding slots are never read: a query sees only slots ≤ its position). A chunk is one
compiled loop (``lax.fori_loop``); between chunks the host moves finished rows out and
waiting prompts in. Throughput: the slots stay full while prompts wait, where a fixed
batch waits for its longest row.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..core import Map, require, untie
from ..core.stored import check_weights
from .cache import context, decode_step, decode_weights, empty_cache, prefill
from .loop import _bucket, _check_int, _ids, _prompts


def generate_batched(
    model: Map,
    params,
    prompts: Sequence,
    max_new_tokens: int,
    *,
    slots: int = 8,
    chunk: int = 16,
    stop_tokens: Sequence[int] = (),
    weights: str = "float32",
) -> list[np.ndarray]:
    """Greedy new ids for each prompt, [max_new_tokens] each (after a stop token, that token
    repeated), through ``slots`` rows decoding ``chunk`` tokens per compiled call.
    ``weights``: the matrices as in ``generate`` (prefills and decoding read the same)."""
    require(model, "decode", "generate_batched")
    check_weights(weights, "generate_batched: weights")
    rows, _ = _prompts(model, list(prompts))
    N = _check_int("max_new_tokens", max_new_tokens, 1)
    B, C = _check_int("slots", slots, 1), _check_int("chunk", chunk, 1)
    ctx, n_max = context(model), max(len(p) for p in rows)
    if n_max + N > ctx:
        raise ValueError(
            f"generate_batched: a prompt of {n_max} tokens plus max_new_tokens={N} exceeds the "
            f"context of {ctx}; ask for at most {max(ctx - n_max, 0)} new tokens"
        )
    stops = _ids("stop_tokens", stop_tokens, model.codomain.shape[-1])
    S, P = _bucket(n_max + N, ctx), _bucket(n_max, ctx)
    model, params = untie(model, params)
    fill, run = _compiled(model, S, P, C)
    laid = decode_weights(model, params, weights)  # split, laid out and stored once
    first = params if weights == "float32" else laid  # the prefills read the same Ŵ

    cache = jax.vmap(lambda _: empty_cache(model, S))(jnp.arange(B))
    t_B, pos_B = np.zeros(B, np.int32), np.zeros(B, np.int32)
    owner = [-1] * B  # the prompt each row holds (-1: none)
    out: list[list[int]] = [[] for _ in rows]
    waiting = list(range(len(rows)))
    while waiting or any(o >= 0 for o in owner):
        for b in range(B):  # free rows take waiting prompts
            if owner[b] < 0 and waiting:
                owner[b] = i = waiting.pop(0)
                tokens = np.zeros(P, np.int32)
                tokens[: len(rows[i])] = rows[i]
                cache = fill(first, cache, b, tokens, len(rows[i]))
                t_B[b], pos_B[b] = rows[i][-1], len(rows[i]) - 1
        live = np.array([o >= 0 for o in owner])
        new_CB, cache = run(laid, cache, jnp.asarray(t_B), jnp.asarray(pos_B))
        new_CB = np.asarray(new_CB)
        for b in np.flatnonzero(live):
            i = owner[b]
            for t in new_CB[:, b]:
                out[i].append(int(t))
                if len(out[i]) == N or int(t) in stops:
                    owner[b] = -1
                    break
            t_B[b], pos_B[b] = new_CB[-1, b], pos_B[b] + C
    return [_finished(o, N) for o in out]


def _finished(ids: list[int], N: int) -> np.ndarray:
    """N ids: those generated, the last (a stop token) repeated after an early stop."""
    return np.asarray(ids + [ids[-1]] * (N - len(ids)), np.int32)


@functools.lru_cache(maxsize=16)
def _compiled(model: Map, S: int, P: int, C: int):
    """(fill: a prompt prefilled into row b of the cache; run: C greedy steps of every row)."""

    @functools.partial(jax.jit, donate_argnums=1)
    def fill(params, cache, b, tokens_P, n):
        _, row = prefill(model, params, tokens_P, S, length=n)
        return jax.tree.map(lambda c, r: c.at[b].set(r), cache, row)

    @functools.partial(jax.jit, donate_argnums=1)
    def run(weights, cache, t_B, pos_B):
        decode = jax.vmap(functools.partial(decode_step, model, weights))

        def one(i, state):
            t_B, cache, out_CB = state
            # a row past its last slot (done, waiting to be refilled) rewrites its last one
            logits_BV, cache = decode(cache, t_B, jnp.minimum(pos_B + i, S - 1))
            t_B = jnp.argmax(logits_BV, -1).astype(jnp.int32)
            return t_B, cache, out_CB.at[i].set(t_B)

        out = jnp.zeros((C, t_B.shape[0]), jnp.int32)
        _, cache, out = jax.lax.fori_loop(0, C, one, (t_B, cache, out))
        return out, cache

    return fill, run
