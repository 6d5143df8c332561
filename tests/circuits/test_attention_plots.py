"""The plots draw what they are given and reject shapes they cannot draw."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from jaxformer.circuits.plots import attention_pattern, attention_patterns, head_scores


def test_plots():
    A = np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None]
    ax = attention_pattern(A, list("abcde"), title="L0H0")
    np.testing.assert_allclose(ax.images[0].get_array(), A)
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcde")
    fig = attention_patterns(np.stack([A, A.T]), layer=1)
    assert [a.get_title() for a in fig.axes] == ["L1H0", "L1H1"]
    ax = head_scores(np.arange(6).reshape(2, 3) / 6, "induction")
    assert ax.images[0].get_array().shape == (2, 3) and len(ax.texts) == 6
    with pytest.raises(ValueError, match=r"\[T, T\]"):
        attention_pattern(np.ones((2, 3)))
    with pytest.raises(ValueError, match="labels"):
        attention_pattern(A, list("abc"))
    plt.close("all")
