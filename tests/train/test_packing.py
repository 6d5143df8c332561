"""Packed documents: a window of several documents is mapped as each document alone, the loss
covers the targets it should, and best-fit packing is the plain algorithm written out here.

The references are independent of ``core.documents``: each document run alone through the
unpacked model (and through transformers, for Llama), positions and masks by plain loops,
the loss by numpy's log-softmax, best fit by an O(n·W) loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer.core.documents import documents, packed, positions_of
from jaxformer.models import Config, build
from jaxformer.train import loss as L
from jaxformer.train.packing import (
    DocumentError,
    Tokenized,
    Windows,
    best_fit,
    pack,
    read_jsonl,
    split_documents,
)
from jaxformer.train.step import loss_and_grad

V, T = 97, 24
FAMILIES = [
    ("gpt2", {}),  # learned positions
    ("gpt2", dict(positional="sinusoidal")),
    ("llama", {}),  # RoPE, GQA-free
    ("llama", dict(n_kv_heads=2, attention="blockwise")),  # flash attention with segments
    ("gemma2", {}),  # sliding windows, soft-capping
    ("mixtral", {}),  # a routed mixture: per token, needs nothing
]


def _docs(seed=0, lengths=(5, 9, 3, 14, 31, 7, 2, 25), prompts=(2, 0, 1, 5, 3, 0, 0, 30)):
    ids = np.random.default_rng(seed).integers(0, V, sum(lengths))
    return Tokenized(ids, np.array(list(zip(lengths, prompts)), np.int64))


def _jnp(w: Windows) -> Windows:
    return Windows(*map(jnp.asarray, w))


def test_positions_restart_at_each_document():
    s = np.array([1, 1, 1, 2, 3, 3, 3, 3, 0, 0])
    want, at = [], 0
    for t in range(len(s)):  # plain loop: count from the last change of segment
        at = 0 if t == 0 or s[t] != s[t - 1] else at + 1
        want.append(at)
    assert positions_of(jnp.asarray(s)).tolist() == want


def _alone(win: Windows):
    """Each document of the windows alone, at the start of a window of its own padded at its
    end (causal attention: what follows a position never changes it): (w, its slots, [T+1])."""
    out = []
    for w in range(len(win.tokens)):
        for s in range(1, win.segments[w].max() + 1):
            at = np.flatnonzero(win.segments[w] == s)
            out.append((w, at, np.pad(win.tokens[w, at], (0, T + 1 - len(at)))))
    return out


@pytest.mark.parametrize("family,kw", FAMILIES, ids=[f + str(k) for f, k in FAMILIES])
def test_a_packed_window_is_each_document_alone(family, kw):
    c = Config(family=family, vocab_size=V, context=T, n_layers=2, d_model=32, n_heads=4, **kw)
    model = build(c, remat=True if family == "llama" else None)  # remat inside the scan too
    params = model.init(jax.random.key(0))
    win, _ = pack(_docs(), T)
    nll = np.asarray(jax.jit(L.batch_nll, static_argnums=0)(model, params, _jnp(win)))
    docs = _alone(win)
    assert len(docs) >= 9  # the 31-token document is two pieces
    alone = np.asarray(L.batch_nll(model, params, jnp.asarray(np.stack([d[2] for d in docs]))))
    worst = max(np.abs(nll[w, at[:-1]] - alone[i, : len(at) - 1]).max(initial=0)
                for i, (w, at, _) in enumerate(docs))  # fmt: skip
    assert worst < 1e-5


@pytest.mark.parametrize("family", ["gpt2", "llama"])  # learned positions; RoPE and GQA
def test_packed_logits_equal_transformers_on_each_document(tmp_path, family):
    pytest.importorskip("torch")
    from hf_reference import hf_logits, random_export, rel

    model = build(Config(family=family, vocab_size=V, context=T, n_layers=2, d_model=32,
                         n_heads=4, n_kv_heads=2 if family == "llama" else None))  # fmt: skip
    params, hf = random_export(model, tmp_path / "hf", seed=1, embed_scale=8.0)
    win, _ = pack(_docs(seed=2), T)
    w = int(np.argmax(win.segments.max(1)))  # the window holding the most documents
    x, s = jnp.asarray(win.tokens[w, :-1]), jnp.asarray(win.segments[w, :-1])
    got = np.asarray(packed(model, params, x, s))
    assert int(s.max()) >= 2  # the window holds several documents
    for seg in range(1, int(s.max()) + 1):
        at = np.flatnonzero(np.asarray(s) == seg)
        assert rel(got[at], hf_logits(hf, np.asarray(x)[at][None])[0]) < 1e-5


def _best_fit_by_hand(lengths, cap):
    """Best-fit decreasing, the slow way: every open bin is looked at for every item."""
    bins, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        fits = [b for b in range(len(bins)) if room[b] >= lengths[i]]
        if fits:
            b = min(fits, key=lambda b: (room[b], b))
        else:
            b = len(bins)
            bins.append([])
            room.append(cap)
        bins[b].append(i)
        room[b] -= lengths[i]
    return bins


@pytest.mark.parametrize("seed", range(4))
def test_best_fit_is_the_plain_algorithm(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 65, 300).tolist()
    assert best_fit(lengths, 65) == _best_fit_by_hand(lengths, 65)


def test_windows_hold_every_token_once_and_train_the_responses():
    docs = _docs()
    win, efficiency = pack(docs, T)
    T1 = T + 1
    # each document's tokens, in order, cut into pieces of T + 1, are in some window
    starts = np.concatenate([[0], np.cumsum(docs.table[:, 0])])
    found = {}
    for w in range(len(win.tokens)):
        for s in range(1, win.segments[w].max() + 1):
            at = np.flatnonzero(win.segments[w] == s)
            assert np.all(np.diff(at) == 1)  # a document's slots are contiguous
            found.setdefault(len(at), []).append((w, at))
    pieces = []
    for d, (n, n_prompt) in enumerate(docs.table):
        for a in range(0, n, T1):
            m = min(T1, n - a)
            pieces.append((docs.ids[starts[d] + a : starts[d] + a + m], n_prompt - a))
    assert sum(len(v) for v in found.values()) == len(pieces)
    for ids, prompt_left in pieces:
        (w, at), *_ = [(w, at) for w, at in found[len(ids)] if
                       np.array_equal(win.tokens[w, at], ids)]  # fmt: skip
        # the targets inside the piece (from its second token) that are not its prompt's
        want = [j >= max(1, prompt_left) for j in range(1, len(ids))]
        assert win.trained[w, at[:-1]].tolist() == want
    # and nothing else is trained: padding, and the first token of each document
    assert win.trained.sum() == sum(max(0, len(i) - max(1, p)) for i, p in pieces)
    assert efficiency == pytest.approx(docs.table[:, 0].sum() / win.tokens.size)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_the_loss_is_the_mean_over_the_trained_targets():
    model = build(Config(family="llama", vocab_size=V, context=T, n_layers=1, d_model=32,
                         n_heads=2))  # fmt: skip
    params = model.init(jax.random.key(3))
    win, _ = pack(_docs(), T)
    docs = _alone(win)
    x = jnp.asarray(np.stack([d[2][:-1] for d in docs]))
    Z = np.asarray(jax.vmap(model, in_axes=(None, 0))(params, x), np.float64)
    total, count = 0.0, 0
    for (w, at, ids), z in zip(docs, Z):
        n = len(at) - 1  # the targets of the document: its tokens after the first
        lp = _log_softmax(z[:n])[np.arange(n), ids[1 : n + 1]]
        keep = win.trained[w, at[:-1]]
        total, count = total - lp[keep].sum(), count + int(keep.sum())
    got = float(L.loss(model, params, _jnp(win)))
    assert got == pytest.approx(total / count, rel=1e-5)


def test_micro_batches_of_packed_windows_give_the_whole_batchs_gradient():
    model = build(Config(vocab_size=V, context=T, n_layers=1, d_model=32, n_heads=2))
    params = model.init(jax.random.key(0))
    win, _ = pack(_docs(lengths=(5, 20, 3, 14, 25, 7, 2, 9, 11, 4), prompts=(0,) * 10), T)
    win = Windows(*(a[:4] for a in win))
    assert len(set(win.trained.sum(1)[:2]) | set(win.trained.sum(1)[2:])) > 1  # unequal halves
    fn = jax.jit(loss_and_grad(model))
    m1, g1 = fn(params, _jnp(win.reshape(1, 4)))
    m2, g2 = fn(params, _jnp(win.reshape(2, 2)))
    assert float(m2["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_the_scope_is_only_where_it_is_set():
    model = build(Config(family="llama", vocab_size=V, context=T, n_layers=1, d_model=32,
                         n_heads=2))  # fmt: skip
    params = model.init(jax.random.key(0))
    x = jnp.arange(T) % V
    with documents(jnp.repeat(jnp.arange(2), T // 2)):
        inside = model(params, x)
        _, points = model.trace(params, x)  # the trace's pattern, computed densely
    outside = model(params, x)
    assert not np.allclose(inside, outside)  # the second half sees the first only outside
    np.testing.assert_allclose(inside[: T // 2], outside[: T // 2], atol=1e-6)
    A = np.asarray(points["blocks"]["attn.pattern"])  # [L, H, T, T]
    assert A.shape[-2:] == (T, T) and not A[..., T // 2 :, : T // 2].any()
    np.testing.assert_allclose(A.sum(-1), 1.0, atol=1e-6)


def test_jsonl_records_and_their_refusals(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "a b"}\n\n{"prompt": "Q: ", "response": "yes"}\n')
    assert read_jsonl(f) == [("", "a b"), ("Q: ", "yes")]
    bad = {
        '{"text": "a"}\nnot json': "line 2",
        '{"prompt": "a"}': "['prompt']",
        '{"text": 3}': "['text']",
        '["text"]': "a list",
        '{"prompt": "a", "response": ""}': "response is empty",
        "": "no records",
    }
    for text, named in bad.items():
        f.write_text(text)
        with pytest.raises(DocumentError, match=named.replace("[", r"\[").replace("]", r"\]")):
            read_jsonl(f)
    with pytest.raises(DocumentError, match="at least two"):
        split_documents([("", "one")], 0.1)
    assert split_documents([("", str(i)) for i in range(10)], 0.2)[1] == [("", "8"), ("", "9")]
