"""feature_view: the page carries each text's activations as given, ranks the top
examples as numpy's argsort does, and refuses mismatched inputs with the fix."""

import numpy as np
import pytest

from jaxformer.views import feature_view, read_payload, top_examples


def _corpus(lengths=(5, 9, 3, 12, 7, 4), F=6, seed=0):
    rng = np.random.default_rng(seed)
    texts = [[f" w{n}_{i}" for i in range(T)] for n, T in enumerate(lengths)]
    acts = [np.maximum(rng.normal(size=(T, F)), 0).astype(np.float32) for T in lengths]
    return texts, acts


def _reference_top(acts_1d, k):
    """The k texts by largest max, via a stable argsort of the negated maxima."""
    maxima = np.array([a.max() for a in acts_1d])
    order = np.argsort(-maxima, kind="stable")[:k]
    return [(int(n), int(np.argmax(acts_1d[n])), float(maxima[n])) for n in order]


def test_top_examples_is_the_argsort_ranking():
    rng = np.random.default_rng(3)
    acts = [rng.normal(size=rng.integers(1, 20)).astype(np.float32) for _ in range(40)]
    acts[7] = acts[3].copy()  # a tie: the earlier text first
    assert top_examples(acts, 10) == _reference_top(acts, 10)
    assert top_examples(acts, 100) == _reference_top(acts, 100)  # k > N: all of them


def test_payload_is_the_latent_of_many():
    texts, acts = _corpus()
    latent = 4
    payload = read_payload(feature_view(texts, acts, latent=latent, top_k=3, window=2).html)
    assert payload["texts"] == texts and payload["latent"] == "4" and payload["window"] == 2
    for got, a in zip(payload["acts"], acts):
        np.testing.assert_array_equal(np.array(got, dtype=np.float32), a[:, latent])
    want = _reference_top([a[:, latent] for a in acts], 3)
    got = [(e["text"], e["peak"], e["max"]) for e in payload["top"]]
    assert [g[:2] for g in got] == [w[:2] for w in want]
    np.testing.assert_array_equal(np.float32([g[2] for g in got]), np.float32([w[2] for w in want]))
    assert payload["scale"]["lo"] == 0.0
    assert np.float32(payload["scale"]["hi"]) == max(a[:, latent].max() for a in acts)


def test_one_latent_and_array_inputs_agree():
    rng = np.random.default_rng(5)
    texts = [list("abcdefg") for _ in range(4)]
    acts_NTF = rng.normal(size=(4, 7, 3)).astype(np.float32)
    many = read_payload(feature_view(texts, acts_NTF, latent=1).html)
    one = read_payload(feature_view(texts, acts_NTF[:, :, 1], latent=1).html)
    listed = read_payload(feature_view(texts, list(acts_NTF[:, :, 1]), latent=1).html)
    assert many == one == listed
    assert one["scale"]["lo"] == pytest.approx(float(acts_NTF[:, :, 1].min()))
    assert read_payload(feature_view(texts, acts_NTF[:, :, 0]).html)["latent"] is None


@pytest.mark.parametrize(
    "texts, acts, kwargs, match",
    [
        ([list("ab")], [np.ones(3)], {}, r"acts\[0\] has 3 positions but texts_tokens\[0\] has 2"),
        ([list("ab")], [np.ones(2), np.ones(2)], {}, r"acts holds 2 texts but texts_tokens holds"),
        ([list("ab")], [np.ones((2, 3))], {}, r"latent=None but acts hold F=3 latents"),
        ([list("ab")], [np.ones((2, 3))], {"latent": 3}, r"latent=3 .* index in \[0, 3\)"),
        ([list("ab")], [np.array([1.0, np.inf])], {}, r"acts\[0\]\[1\] is inf; give finite"),
        ([[]], [np.ones(0)], {}, r"texts_tokens\[0\] is empty"),
        ([], [], {}, r"texts_tokens is empty"),
        ([list("ab")], [np.ones(2)], {"top_k": 0}, r"top_k=0; give a positive number"),
        ([list("ab")], [np.ones(2)], {"window": -1}, r"window=-1"),
        ([[1, 2]], [np.ones(2)], {}, r"texts_tokens\[0\]\[0\] is int 1"),
        ([list("ab")], [np.ones((2, 1, 1))], {}, r"acts have \[3\] dimensions"),
        ([list("ab")], [np.array(["x", "y"])], {}, r"acts\[0\] has dtype <U1"),
    ],
)
def test_refusals_name_the_value_and_the_fix(texts, acts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        feature_view(texts, acts, **kwargs)
