"""The CPU train step unrolls the scan over layers without changing the model's params."""

import jax

from jaxformer.models import Config, build
from jaxformer.train.step import unrolled


def test_cpu_step_unrolls_every_repeat_and_keeps_the_params():
    model = build(Config(vocab_size=32, context=8, n_layers=2, d_model=16, n_heads=2))
    fast = unrolled(model)
    assert jax.default_backend() == "cpu"
    assert fast.find("blocks").unrolled and not model.find("blocks").unrolled  # model untouched
    assert jax.tree.structure(fast.spec()) == jax.tree.structure(model.spec())
    assert unrolled(fast).find("blocks").unrolled  # idempotent
