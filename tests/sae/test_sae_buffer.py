"""The shuffled buffer: never more than its capacity, each produced row served exactly
once, batches mixed across chunks, deterministic from its seed, resumable exactly."""

import numpy as np
import pytest

from jaxformer.sae import Buffer

CHUNK, D = 32, 3


class Source:
    """Chunk c holds rows c·CHUNK … c·CHUNK + CHUNK − 1, each row's id in every column."""

    def __init__(self):
        self.made = 0

    def __call__(self, c):
        self.made += 1
        ids = np.arange(c * CHUNK, (c + 1) * CHUNK, dtype=np.float32)
        return np.repeat(ids[:, None], D, axis=1)


def test_capacity_coverage_and_mixing():
    src = Source()
    buf = Buffer(src, capacity=256, batch=16, seed=3)
    served = []
    for _ in range(100):
        b = buf.next()
        assert b.shape == (16, D) and (b == b[:, :1]).all()
        served.extend(b[:, 0].astype(int))
        assert buf.store.shape == (256, D)
        produced = src.made * CHUNK
        assert produced - len(served) <= 256  # rows held: produced, not yet served
    served = np.array(served)
    assert len(np.unique(served)) == len(served)  # none served twice
    held = buf.store[buf.drawn :, 0].astype(int)  # what the buffer still holds, unserved
    everything = np.sort(np.concatenate([served, held]))
    np.testing.assert_array_equal(everything, np.arange(src.made * CHUNK))  # none lost
    # a minibatch mixes many chunks (it is a shuffle, not a stream)
    chunks = [len(np.unique(served[i : i + 16] // CHUNK)) for i in range(0, len(served), 16)]
    assert np.mean(chunks) > 3


def test_deterministic_and_resumable():
    a = Buffer(Source(), 128, 16, seed=1)
    b = Buffer(Source(), 128, 16, seed=1)
    c = Buffer(Source(), 128, 16, seed=2)
    first = [a.next() for _ in range(13)]
    np.testing.assert_array_equal(np.stack(first), np.stack([b.next() for _ in range(13)]))
    assert not np.array_equal(np.stack(first), np.stack([c.next() for _ in range(13)]))
    store, counters = a.state()
    resumed = Buffer(Source(), 128, 16, seed=1)
    resumed.restore(store.copy(), dict(counters))
    for _ in range(20):
        np.testing.assert_array_equal(resumed.next(), a.next())


def test_refuses_a_capacity_that_does_not_hold_whole_batches():
    with pytest.raises(ValueError, match="--buffer 64"):
        Buffer(Source(), 50, 16)
    with pytest.raises(ValueError, match="even multiple"):
        Buffer(Source(), 16, 16)
