"""Generation: the model as a cached composite (prefill, decode_step), sampling
transforms on logits, and ``generate``, one compiled loop over ragged prompts.

    from jaxformer.generate import generate
    new_ids = generate(model, params, tok.encode("Once"), 50, key=jax.random.key(0), top_p=0.9)
"""

from .batching import generate_batched
from .cache import decode_step, empty_cache, prefill, step
from .loop import generate
from .sampling import sample_logits, temperature, top_k, top_p

__all__ = [
    "decode_step",
    "empty_cache",
    "generate",
    "generate_batched",
    "prefill",
    "sample_logits",
    "step",
    "temperature",
    "top_k",
    "top_p",
]
