"""``generate`` against step-by-step recomputes (numpy float64): greedy decoding, ragged
batches, stop tokens, sampling constraints, seeds, streaming and the host-side checks."""

import functools

import jax
import numpy as np
import pytest
import reference as ref

from jaxformer import Config, build
from jaxformer.generate import generate

N = 14  # every prompt + N falls in one cache bucket (32 slots): one compile per shape
PROMPTS = [[5, 17, 3], [60, 2, 2, 41, 9, 33, 8, 1, 12], [7] * 14]


@functools.cache
def model(family):
    kw = dict(n_kv_heads=2) if family == "llama" else {}
    c = Config(
        family=family, vocab_size=64, context=64, n_layers=2, d_model=32, n_heads=4, **kw
    )  # fmt: skip
    m = build(c)
    rng = np.random.default_rng(0)  # wide logits: no near-ties for argmax to split
    noise = lambda x: x + 0.3 * rng.standard_normal(x.shape, np.float32)
    p = jax.tree.map(noise, m.init(jax.random.key(0)))
    return c, m, p


def recompute(family, prompt, n):
    """The next-token logits after each of n greedy steps, each a run from scratch."""
    c, _, p = model(family)
    full = ref.gpt2 if family == "gpt2" else ref.llama
    ids, rows = list(prompt), []
    for _ in range(n):
        rows.append(full(p, np.array(ids), c)[-1])
        ids.append(int(rows[-1].argmax()))
    return ids[len(prompt) :], rows


def cut(ids, stop):
    """A row after the stop rule: everything past the first stop token repeats it."""
    ids = list(ids)
    if stop in ids:
        i = ids.index(stop)
        ids[i:] = [stop] * (len(ids) - i)
    return ids


@functools.cache
def greedy_batch(family):
    """(stop token, the batch's rows): the stop token is prompt 0's 6th greedy token."""
    _, m, p = model(family)
    stop = recompute(family, PROMPTS[0], N)[0][5]
    return stop, np.asarray(generate(m, p, PROMPTS, N, temperature=0, stop_tokens=(stop,)))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_greedy_equals_argmax_of_full_recomputes(family):
    stop, got = greedy_batch(family)
    for b, prompt in enumerate(PROMPTS):
        want = cut(recompute(family, prompt, N)[0], stop)
        assert got[b].tolist() == want, f"prompt {b}"


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_ragged_batch_equals_one_by_one_and_streams_in_order(family):
    _, m, p = model(family)
    stop, batch = greedy_batch(family)
    seen = []  # one callable for every call: ``stream`` is part of the compile key
    for b, prompt in enumerate(PROMPTS):
        seen.clear()
        row = generate(m, p, prompt, N, temperature=0, stop_tokens=[stop], stream=seen.append)
        assert row.shape == (N,)
        np.testing.assert_array_equal(row, batch[b])
        streamed = np.concatenate(seen).tolist()
        assert streamed == row[: len(streamed)].tolist()
        # alone, a sequence that stops ends the loop: nothing is generated after the stop
        assert len(streamed) == (row.tolist().index(stop) + 1 if stop in row else N)
    assert stop in batch[0] and batch[0][-1] == stop


@functools.cache
def sampled(seed):
    _, m, p = model("gpt2")
    key = jax.random.key(seed)
    return np.asarray(generate(m, p, PROMPTS[:2], N, key=key, temperature=0.8, top_k=4, top_p=0.7))


def test_sampling_stays_inside_top_k_then_top_p_of_the_recomputed_logits():
    c, _, p = model("gpt2")
    for b, prompt in enumerate(PROMPTS[:2]):
        ids = list(prompt)
        for t in sampled(1)[b]:
            logits = ref.gpt2(p, np.array(ids), c)[-1] / 0.8
            top4 = np.argsort(-logits)[:4]
            probs = np.exp(logits[top4] - logits[top4].max())
            probs /= probs.sum()
            mass = np.cumsum(probs) - probs  # the mass before each of the top 4
            assert t in top4[mass < 0.7], f"prompt {b}, after {ids}"
            ids.append(int(t))


def test_the_same_seed_gives_the_same_tokens():
    _, m, p = model("gpt2")
    kw = dict(key=jax.random.key(1), temperature=0.8, top_k=4, top_p=0.7)
    again = generate(m, p, PROMPTS[:2], N, **kw)
    np.testing.assert_array_equal(again, sampled(1))
    assert not np.array_equal(sampled(2), sampled(1))


@pytest.mark.parametrize(
    "prompt,kw,match",
    [
        ([], {}, "empty"),
        ([[1, 2], []], {}, "prompt 1: the sequence is empty"),
        ([1, 64], {}, "token id 64 is outside the vocabulary"),
        ([-1, 3], {}, "id -1"),
        ([1.0, 2.0], {}, "integer token ids"),
        ("hello", {}, "encode the text"),
        (list(range(60)) + [1] * 10, {}, "exceeds the context 64"),
        ([1] * 60, {"max_new_tokens": 5}, "exceeds the context of 64; ask for at most 4"),
        ([1], {"max_new_tokens": 0}, "max_new_tokens must be an integer ≥ 1"),
        ([1], {"temperature": -0.5}, "temperature must be a finite number ≥ 0"),
        ([1], {"temperature": float("nan")}, "temperature"),
        ([1], {"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ([1], {"top_p": 1.5}, "top_p"),
        ([1], {"top_k": 0}, r"top_k must be an integer \[1, 64\]"),
        ([1], {"top_k": 2.5}, "top_k"),
        ([1], {"stop_tokens": [64]}, "stop_tokens must be token ids"),
        ([1], {"key": None}, "needs key="),
    ],
)
def test_bad_input_fails_on_the_host_with_the_fix(prompt, kw, match):
    _, m, p = model("gpt2")
    kw = {"max_new_tokens": 4, "key": jax.random.key(0)} | kw
    with pytest.raises(ValueError, match=match):
        generate(m, p, prompt, **kw)
