"""``generate``: prompts in, new token ids out, the whole loop one compiled function.

    prompts (ragged) ──prefill──▶ cache ──decode_step(last prompt token)──▶ logits
                     ──sample──▶ t_0 ──decode_step──▶ logits ──sample──▶ t_1 ──▶ …

inside a single jitted ``lax.while_loop``. Each sequence keeps its own length: prompts
are right-padded to a bucket (a power of two) and prefilled into a cache of
``min(context, bucket(longest prompt + max_new_tokens))`` slots; sequence b writes its
i-th new token's k, v at slot n_b + i, and a query never sees a slot past its own
position, so the padding is overwritten before it is ever read. (A windowed layer's ring
of w slots is never written with padding: the prefill gives it the last prompt position.)
Batched generation is therefore one-by-one generation, row by row.

Rules:
  * the context is a hard limit: ``len(prompt) + max_new_tokens > context`` raises a
    ValueError up front (shorten the prompt or ask for fewer tokens); nothing is truncated.
  * a sequence that emits a stop token is done: the rest of its row repeats that stop
    token. The loop ends when every sequence is done or ``max_new_tokens`` are out.
  * ``temperature=0`` is greedy decoding (no key needed); otherwise ``key`` is required.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from ..core import Map, require, untie
from ..core.stored import check_weights
from ..models import validate_tokens
from ..models.lora import LoRA, merge
from .cache import context, decode_step, decode_weights, prefill
from .sampling import sample_logits


def generate(
    model: Map,
    params,
    prompt_ids,
    max_new_tokens: int,
    *,
    key: jax.Array | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_tokens: Sequence[int] = (),
    stream: Callable[[np.ndarray], None] | None = None,
    weights: str = "float32",
) -> jax.Array:
    """New token ids: [max_new_tokens] for one prompt (a list of ids), [B, max_new_tokens]
    for a list of B prompts of any lengths. The prompt is not repeated in the output.

    ``stream(tokens_B)`` (optional) is called on the host with each step's new tokens,
    in order, while the loop runs: the CLI prints text as it is generated.

    ``weights``: how the loop keeps the matrices it multiplies by (``Map.matrices``):
    "float32" (the params themselves), "bfloat16", or "int8" per output channel with float32
    scales (``core.stored``), made once before the loop. The prefill reads them too, so the
    ids are those of the model whose matrices are Ŵ; activations, norms, biases and the
    embedding lookup stay float32.
    """
    require(model, "decode", "generate")
    check_weights(weights, "generate: weights")
    if isinstance(model, LoRA):  # W₀ + (α/r) A B folded once, not recomputed at every token
        model, params = merge(model, params)
    prompts, single = _prompts(model, prompt_ids)
    V, ctx = model.codomain.shape[-1], context(model)
    n_max = max(len(p) for p in prompts)
    N = _check_int("max_new_tokens", max_new_tokens, 1)
    if n_max + N > ctx:
        raise ValueError(
            f"generate: a prompt of {n_max} tokens plus max_new_tokens={N} exceeds the context "
            f"of {ctx}; ask for at most {max(ctx - n_max, 0)} new tokens or shorten the prompt"
            " (keep its last tokens)"
        )
    greedy = _check_sampling(temperature, top_k, top_p, V)
    if not greedy and key is None:
        raise ValueError("generate: sampling at temperature > 0 needs key=jax.random.key(seed)")
    stops = _ids("stop_tokens", stop_tokens, V)
    P = _bucket(n_max, ctx)
    tokens_BP = np.zeros((len(prompts), P), np.int32)  # padding: id 0, never attended
    for b, p in enumerate(prompts):
        tokens_BP[b, : len(p)] = p
    n_B = np.array([len(p) for p in prompts], np.int32)
    S, nucleus = _bucket(n_max + N, ctx), top_p is not None
    run = _compiled(model, N, S, greedy, top_k, nucleus, stream, weights)
    key = jax.random.key(0) if key is None else key
    out = run(params, tokens_BP, n_B, key, temperature, top_p or 1.0, jnp.asarray(stops))
    return out[0] if single else out


@functools.lru_cache(maxsize=32)  # keyed on ``stream`` too: pass the same callable again
def _compiled(model, N, S, greedy, k, nucleus, stream, weights):
    return jax.jit(functools.partial(_loop, model, N, S, greedy, k, nucleus, stream, weights))


def _loop(model, N, S, greedy, k, nucleus, stream, stored, params, tokens_BP, n_B, key, tau, p,
          stops):  # fmt: skip
    B = tokens_BP.shape[0]
    model, params = untie(model, params)
    weights = decode_weights(model, params, stored)  # split, laid out and stored once
    first = params if stored == "float32" else weights  # the prefill reads the same Ŵ
    # Only the cache is kept from the prefill, so XLA drops its [P, V] unembedding; the
    # loop's first step re-reads each prompt's last token and gives the logits after it.
    _, cache = jax.vmap(lambda t_P, n: prefill(model, first, t_P, S, length=n))(tokens_BP, n_B)
    decode = jax.vmap(functools.partial(decode_step, model, weights))

    def more(state):
        i, _, done_B, _, _ = state
        return (i < N) & ~jnp.all(done_B)

    def next_token(state):
        i, t_B, done_B, cache, out_BN = state
        logits_BV, cache = decode(cache, t_B, n_B - 1 + i)  # t_B sits at position n_b - 1 + i
        key_i = jax.random.fold_in(key, i)
        new_B = sample_logits(key_i, logits_BV, 0 if greedy else tau, k, p if nucleus else None)
        new_B = jnp.where(done_B, t_B, new_B)  # a finished row repeats its stop token
        if stream is not None:
            io_callback(stream, None, new_B, ordered=True)
        done_B = done_B | jnp.isin(new_B, stops)
        return i + 1, new_B, done_B, cache, out_BN.at[:, i].set(new_B)

    last_B = tokens_BP[jnp.arange(B), n_B - 1]
    start = (0, last_B, jnp.zeros(B, bool), cache, jnp.zeros((B, N), jnp.int32))
    i, t_B, _, _, out_BN = jax.lax.while_loop(more, next_token, start)
    return jnp.where(jnp.arange(N) < i, out_BN, t_B[:, None])  # stopped early: fill the rest


def _bucket(n: int, cap: int) -> int:
    """The next power of two ≥ n (at least 16), at most ``cap``: few shapes, few compiles."""
    return min(cap, max(16, 1 << math.ceil(math.log2(n))))


# -- host-side validation -----------------------------------------------------------------
def _prompts(model: Map, prompt_ids) -> tuple[list[np.ndarray], bool]:
    """One prompt (ids) or a list of prompts (ragged), as validated int32 arrays."""
    if isinstance(prompt_ids, np.ndarray | jax.Array) and np.ndim(prompt_ids) == 2:
        prompt_ids = list(prompt_ids)
    single = isinstance(prompt_ids, str) or not (
        len(prompt_ids) and all(np.ndim(p) == 1 for p in prompt_ids)
    )
    if single:
        prompt_ids = [prompt_ids]
    where = lambda b: "generate: the prompt" if single else f"generate: prompt {b}"
    return [
        validate_tokens(model, p, where(b), ndim=(1,)) for b, p in enumerate(prompt_ids)
    ], single


def _check_int(name: str, v, lo: int, hi: int | None = None) -> int:
    if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < lo or (hi and v > hi):
        span = f"[{lo}, {hi}]" if hi else f"≥ {lo}"
        raise ValueError(f"generate: {name} must be an integer {span}, got {v!r}")
    return int(v)


def _check_sampling(temperature, k, p, V: int) -> bool:
    """Validate the sampling arguments; return True for greedy decoding."""
    if not isinstance(temperature, int | float) or not temperature >= 0 or math.isinf(temperature):
        raise ValueError(
            f"generate: temperature must be a finite number ≥ 0 (0 = greedy), got {temperature!r}"
        )
    if k is not None:
        _check_int("top_k", k, 1, V)
    if p is not None and not (isinstance(p, int | float) and 0 < p <= 1):
        raise ValueError(f"generate: top_p must be in (0, 1] (1 keeps every token), got {p!r}")
    return temperature == 0


def _ids(name: str, ids, V: int) -> np.ndarray:
    ids = list(ids)
    if not all(isinstance(i, int | np.integer) and 0 <= i < V for i in ids):
        raise ValueError(f"generate: {name} must be token ids in [0, {V}), got {ids!r}")
    return np.asarray(ids, np.int32)
