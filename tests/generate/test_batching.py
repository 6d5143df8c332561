"""Continuous batching: more prompts than slots, rows stopping at different steps and
handing their slots on between chunks; every prompt's ids are those of the numpy float64
greedy recompute of that prompt alone (``test_generate.recompute``), cut at its stop token."""

import pytest
from test_generate import cut, model, recompute

from jaxformer.generate import generate_batched

N = 12
PROMPTS = [[5, 17, 3], [60, 2, 2, 41, 9, 33, 8, 1, 12], [7] * 14, [1, 2], [40, 41, 42, 43, 44],
           [9], [33, 3, 33, 3, 33, 3]]  # fmt: skip


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_each_prompt_gets_its_own_greedy_ids(family):
    _, m, p = model(family)
    alone = [recompute(family, q, N)[0] for q in PROMPTS]
    stop = alone[0][4]  # prompt 0 stops after 5 tokens; others at other steps, or never
    got = generate_batched(m, p, PROMPTS, N, slots=3, chunk=4, stop_tokens=(stop,))
    assert len(got) == len(PROMPTS)
    for q, g, a in zip(PROMPTS, got, alone):
        assert list(g) == cut(a, stop), q
    assert sum(stop in a for a in alone) >= 2  # rows do stop early and hand their slots on


def test_refusals():
    _, m, p = model("gpt2")
    with pytest.raises(ValueError, match="slots must be an integer"):
        generate_batched(m, p, PROMPTS, N, slots=0)
    with pytest.raises(ValueError, match="exceeds the context of 64"):
        generate_batched(m, p, PROMPTS, 60)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generate_batched(m, p, [[1, 99]], N)
