"""LoRA as a reparametrisation: at init the adapted model is the base one; with any A, B it
is the base model on W₀ + (α/r)·A B written out in numpy (each W as a matrix from its input
axes to its output axes); ``merge`` gives a plain model of the same logits; the cached
decode sees the adapter; trained alone, the adapter is all that moves and all that holds
optimizer state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxformer.generate import generate
from jaxformer.models import Config, build
from jaxformer.models.lora import adapter_only, lora, merge

CONFIGS = {
    "gpt2": Config(family="gpt2", vocab_size=61, context=16, n_layers=2, d_model=32, n_heads=4),
    "llama": Config(family="llama", vocab_size=61, context=16, n_layers=2, d_model=32,
                    n_heads=4, n_kv_heads=2),
}  # fmt: skip
TARGETS = ("W_Q", "W_V", "W_O", "W_in", "W_out")
R, ALPHA = 3, 5.0


def _random_adapters(params, key):
    """Every A and B drawn (B is 0 at init, which would test nothing)."""
    leaves, tree = jax.tree.flatten(params["lora"])
    keys = jax.random.split(key, len(leaves))
    drawn = [0.3 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)]
    return {**params, "lora": tree.unflatten(drawn)}


def _numpy_delta(A, B, axes):
    """(α/r) A B as W's [L, …] array: W seen as the matrix [in, out] (in = d for a map that
    reads the residual stream, the other axes for one that writes it)."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    L = A.shape[0]
    if axes[-1] == "d":  # W [L, *in, d]: A [L, *in, r], B [L, r, d]
        dW = A.reshape(L, -1, R) @ B
        return ALPHA / R * dW.reshape(L, *A.shape[1:-1], B.shape[-1])
    # W [L, *before, d, *after] reads d: A [L, d, r], B [L, r, *before, *after]
    out = B.shape[2:]
    dW = (A @ B.reshape(L, R, -1)).reshape(L, A.shape[1], *out)  # [L, d, *out]
    i = axes.index("d")  # put d back where W has it
    return ALPHA / R * np.moveaxis(dW, 1, i)


@pytest.mark.parametrize("family", list(CONFIGS))
def test_the_adapted_model_is_the_base_on_the_sum_written_in_numpy(family):
    model = build(CONFIGS[family])
    adapted = lora(model, rank=R, alpha=ALPHA, targets=TARGETS)
    params = adapted.init(jax.random.key(0))
    x = jax.random.randint(jax.random.key(1), (16,), 0, 61)
    base = {k: v for k, v in params.items() if k != "lora"}
    np.testing.assert_array_equal(adapted(params, x), model(base, x))  # B = 0: the same map

    params = _random_adapters(params, jax.random.key(2))
    spec = model.spec()
    hand = jax.tree.map(lambda a: np.asarray(a, np.float64), base)
    for t in TARGETS:
        group = "mlp" if t in ("W_in", "W_out") else "attn"
        ab, W = params["lora"]["blocks"][group][t], hand["blocks"][group][t]
        axes = spec["blocks"][group][t].axes
        hand["blocks"][group][t] = W + _numpy_delta(ab["A"], ab["B"], axes)
    want = model(jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), hand), x)
    np.testing.assert_allclose(adapted(params, x), want, rtol=1e-5, atol=1e-5)

    plain, merged = merge(adapted, params)
    assert plain is model and "lora" not in merged
    np.testing.assert_allclose(plain(merged, x), adapted(params, x), rtol=1e-5, atol=1e-5)

    new = list(np.asarray(generate(adapted, params, [1, 2, 3], 6, temperature=0)))
    full = adapted(params, np.asarray([1, 2, 3] + new))  # greedy: each the argmax after its
    assert list(np.argmax(full[2:-1], -1)) == new  # prefix, in the adapted model's forward


def test_trained_alone_the_adapter_moves_and_holds_the_state():
    model = build(CONFIGS["llama"])
    adapted = lora(model, rank=R, alpha=ALPHA, targets=("W_Q", "W_V"))
    params = adapted.init(jax.random.key(0))
    x = jax.random.randint(jax.random.key(1), (17,), 0, 61)
    loss = lambda p: (
        -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(adapted(p, x[:-1])), x[1:, None], 1))
    )
    opt = optax.multi_transform({"trained": optax.adam(1e-2), "frozen": optax.set_to_zero()},
                                adapter_only)  # fmt: skip
    state = opt.init(params)
    n_adapter = sum(a.size for a in jax.tree.leaves(params["lora"]))
    assert sum(a.size for a in jax.tree.leaves(state) if np.ndim(a)) == 2 * n_adapter
    before = loss(params)
    for _ in range(5):
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert loss(params) < before
    base0 = adapted.init(jax.random.key(0))
    for k in params:
        same = jax.tree.map(np.array_equal, params[k], base0[k])
        assert all(jax.tree.leaves(same)) == (k != "lora"), k


def test_a_target_that_is_no_matrix_of_the_model_is_refused_when_built():
    model = build(CONFIGS["gpt2"])
    with pytest.raises(ValueError, match=r"target 'W_X' names no parameter.*blocks.attn.W_Q"):
        lora(model, targets=("W_X",))
    with pytest.raises(ValueError, match=r"blocks.attn.b_Q .* is not a matrix"):
        lora(model, targets=("b_Q",))
    with pytest.raises(ValueError, match="rank 0 must be a positive integer"):
        lora(model, rank=0)
    with pytest.raises(ValueError, match="already adapted"):
        lora(lora(model), rank=2)
