"""The batch sampler: a pure function of (seed, step); no repeats, no skips, disjoint processes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxformer.train.sampler import BatchSampler, eval_windows

N, T, B = 1000, 7, 4  # 141 windows per epoch


def _starts(s: BatchSampler, steps):
    return np.concatenate([s.starts(k) for k in steps])


def test_each_epoch_visits_every_window_once():
    s = BatchSampler(N, T, B, seed=3)
    E = s.n_windows
    starts = _starts(s, range(3 * E // B + 1))  # three epochs (and a bit)
    for e in range(3):
        epoch = starts[e * E : (e + 1) * E]
        shift = epoch.min() % T
        assert sorted(epoch) == list(shift + T * np.arange(E)), e
        assert epoch.max() + T + 1 <= N  # every window fits


def test_epochs_differ_in_order_and_cut():
    s = BatchSampler(N, T, B, seed=0)
    E = s.n_windows
    starts = _starts(s, range(2 * E // B + 1))
    assert not np.array_equal(starts[:E] - starts[:E].min(), starts[E : 2 * E] - starts[E:].min())


def test_batch_rows_are_token_windows():
    tokens = np.random.default_rng(0).integers(0, 300, N).astype(np.uint16)
    s = BatchSampler(N, T, B, seed=1)
    x = s.batch(tokens, 9)
    assert x.shape == (B, T + 1) and x.dtype == np.int32
    for row, start in zip(x, s.starts(9)):
        assert np.array_equal(row, tokens[start : start + T + 1])


def test_processes_read_disjoint_slices_of_the_global_batch():
    glob = BatchSampler(N, T, 8, seed=2)
    parts = [BatchSampler(N, T, 8, seed=2, process_index=p, process_count=4) for p in range(4)]
    for k in (0, 5, 40):
        got = np.concatenate([p.starts(k) for p in parts])
        assert np.array_equal(got, glob.starts(k))
        assert len(set(got.tolist())) == 8


def test_bad_sampler_arguments():
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        BatchSampler(N, T, 8, process_count=3)
    with pytest.raises(ValueError, match="process_index=2 is outside"):
        BatchSampler(N, T, 8, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="do not fill two windows"):
        BatchSampler(10, 8, 1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 400), T=st.integers(1, 50))
def test_eval_windows_predict_every_token_but_the_first_once(n, T):
    if n - 1 < T:
        return
    starts, mask = eval_windows(n, T)
    targets = (starts[:, None] + 1 + np.arange(T))[mask]
    assert sorted(targets.tolist()) == list(range(1, n))
    assert starts.min() >= 0 and starts.max() + T + 1 <= n
