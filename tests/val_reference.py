"""A training run's validation bits per byte, recomputed outside the training library:
the run's last checkpoint through the numpy forward pass (``reference.forward``) over the
whole val text, in windows of the context, and the bytes of the targets counted from the
text itself."""

import math
from dataclasses import dataclass
from pathlib import Path

import reference as ref

from jaxformer.rundir_load import load_for_inference
from jaxformer.train.data import split


@dataclass(frozen=True)
class Val:
    bpb: float  # Σ nll / ln 2 / Σ bytes(targets): what the run's final eval must report
    uniform_bpb: float  # the same for a model that puts 1/|V| on every token
    nll: float
    targets: int  # N − 1: every val token but the first
    target_bytes: int
    first_token_bytes: int  # the one input never a target
    last_token_bytes: int  # the one target never an input


def val_reference(run_dir: Path, corpus_text: str, val_fraction: float = 0.1) -> Val:
    """``run_dir``'s final params scored on the val split of ``corpus_text`` (numpy, float64)."""
    config, params, tok = load_for_inference(run_dir)
    _, val_text = split(corpus_text, val_fraction)
    assert corpus_text.endswith(val_text) and len(val_text) > 0.05 * len(corpus_text)
    ids = tok.encode_ordinary(val_text)
    assert tok.decode_bytes(ids) == val_text.encode()  # the val tokens are the val text
    nll, targets = ref.next_token_nll(lambda x: ref.forward(params, x, config), ids, config.context)
    assert targets == len(ids) - 1
    # every byte of the val text is predicted but those of the first token, the first input
    first, last = len(tok.decode_bytes(ids[:1])), len(tok.decode_bytes(ids[-1:]))
    target_bytes = len(val_text.encode()) - first
    bits = lambda nats: nats / math.log(2) / target_bytes
    uniform = bits(targets * math.log(config.vocab_size))
    return Val(bits(nll), uniform, nll, targets, target_bytes, first, last)
