"""transformers' OLMo 2 and Phi-3, built from config objects with every parameter random:
the reference that tests/interop/test_olmo2_phi3.py compares jaxformer with."""

import numpy as np
import transformers
from hf_reference import randomize

RTOL = 1e-5  # max |Δ logits| / max |logits|, float32
V, B, T = 61, 2, 16
CLASSES = {"olmo2": "Olmo2ForCausalLM", "phi3": "Phi3ForCausalLM"}


def hf_class(family: str):
    return getattr(transformers, CLASSES[family])


def rope(theta: float = 1e4, fraction: float = 1.0) -> dict:
    return {"rope_type": "default", "rope_theta": theta, "partial_rotary_factor": fraction}


def build_hf(family: str, kw: dict, context: int = T, seed: int = 0):
    """A random ``family`` model of transformers' (eager attention: the exact reference)."""
    cls = hf_class(family)
    base = dict(num_hidden_layers=2, intermediate_size=40, max_position_embeddings=context)
    cfg = cls.config_class(
        vocab_size=V, attn_implementation="eager", bos_token_id=None, eos_token_id=None,
        pad_token_id=None, **(base | kw),
    )  # fmt: skip
    return randomize(cls(cfg), seed, std=0.3, head=2.0)


def tokens_for(seed: int, n: int = T) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (B, n))
