"""A model's loss on a text: nats per token, perplexity, bits per byte, against bzip2 -9.

    x = τ(text)[:max_tokens]                    τ the checkpoint's tokenizer, specials as text
    nll_t = −log p(x_t | x_{b_k} … x_{t−1})     for each target t window k scores (windows.py)
    loss  = Σ_t nll_t / n                       n = the number of targets scored
    ppl   = exp(loss)
    bpb   = Σ_t nll_t / (ln 2 · Σ_t |bytes(x_t)|)       the bytes the scored tokens stand for
    bzip2 = 8 · |bzip2 -9 (bytes(x))| / |bytes(x)|      on the same text, the baseline to beat

The forward pass and the per-target NLL are training's (``train.loss.batch_nll``: float32
logits, log-softmax in float32); each batch's per-window sums are added up in float64 on
the host. The text is tokenized as training tokenizes its val split (special tokens are
text, no BOS/EOS), so its bits per byte are those of the bytes themselves.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import jax
import numpy as np
from tqdm import tqdm

from ..models import Config, build
from ..tokenizer import Tokenizer
from ..train.data import bzip2_bits_per_byte, id_bytes
from ..train.loss import batch_nll, bits_per_byte
from .windows import batches, check_window, plan, scored_targets


@dataclass(frozen=True)
class Result:
    """What ``evaluate`` measured (``asdict`` is the ``--json`` object)."""

    loss: float  # nats per scored token
    perplexity: float
    bits_per_byte: float
    bzip2_bits_per_byte: float  # bzip2 -9 on the evaluated text's bytes
    tokens: int  # targets scored
    bytes: int  # the UTF-8 bytes the scored tokens stand for
    nll_sum: float  # Σ nll_t, nats
    text_tokens: int  # the ids evaluated (the text's, or its first --max_tokens)
    text_bytes: int
    windows: int
    context: int
    stride: int
    seconds: float  # the forward passes, after compiling
    compile_seconds: float
    tokens_per_s: float  # scored tokens per second of the forward passes

    def to_dict(self) -> dict:
        """The fields, a NaN or infinity as None (JSON has neither)."""
        finite = lambda v: v if not isinstance(v, float) or math.isfinite(v) else None
        return {k: finite(v) for k, v in asdict(self).items()}


def check_settings(
    context: int | None, stride: int | None, batch_size: int, max_tokens: int | None
) -> None:
    """Refuse, naming the flag, the settings that are wrong whatever the model."""
    check_window(context, stride, None)
    if batch_size < 1:
        raise ValueError(f"--batch_size {batch_size}: must be at least 1")
    if max_tokens is not None and max_tokens < 2:
        raise ValueError(f"--max_tokens {max_tokens}: must be at least 2 (a context, a target)")


def tokenize(tokenizer, text: str) -> np.ndarray:
    """τ(text) with special tokens as text and no BOS/EOS, as training encodes its splits
    (a ``Tokenizer`` through tiktoken, as data.py does; an ``HFTokenizer`` exactly as
    ``tokenizers`` with ``add_special_tokens=False`` and its added tokens as text)."""
    if isinstance(tokenizer, Tokenizer):
        ids = tokenizer.to_tiktoken().encode_ordinary(text)
    else:
        ids = tokenizer.encode_ordinary(text)
    return np.asarray(ids, np.int64)


def evaluate(
    config: Config, params, tokenizer, text: str, *, context: int | None = None,
    stride: int | None = None, batch_size: int = 8, max_tokens: int | None = None,
    progress: bool = False,
) -> Result:  # fmt: skip
    """The loss of the model ``(config, params)`` on ``text`` (module docstring): windows of
    ``context`` ids (default the model's), ``stride`` apart (default ``context``: disjoint),
    ``batch_size`` windows per forward pass; ``max_tokens``: the first so many ids only.
    Every argument is checked here, before anything is compiled."""
    check_settings(context, stride, batch_size, max_tokens)
    context = config.context if context is None else context
    stride = context if stride is None else stride
    check_window(context, stride, config.context)
    if not text:
        raise ValueError("--data: the text is empty; pass a file or folder holding text")
    ids = tokenize(tokenizer, text)[:max_tokens]
    if len(ids) < 2:
        raise ValueError(
            f"--data: the text is {len(ids)} token(s) long; scoring needs at least 2 "
            "(pass more text)"
        )
    if int(ids.max()) >= config.vocab_size:
        raise ValueError(
            f"the tokenizer gives id {int(ids.max())}, outside the model's vocabulary "
            f"[0, {config.vocab_size}); the tokenizer belongs to another model"
        )
    width = min(context, len(ids))  # a window longer than the text is the text
    windows = plan(len(ids), width, min(stride, width))
    targets = scored_targets(windows)
    unique, counts = np.unique(ids[targets], return_counts=True)
    # id_bytes, not data.token_bytes: a special id scored (an HF unk_token, which BPE gives
    # for a char it has no token for) counts the bytes it decodes to, and only the ids
    # scored are decoded, not the whole vocabulary
    n_bytes = int((id_bytes(tokenizer, unique) * counts).sum())
    text_bytes = tokenizer.decode_bytes(ids.tolist())

    batch_size = min(batch_size, len(windows))  # no batch of padding alone
    model = build(config)
    sums = jax.jit(lambda p, x, m: (batch_nll(model, p, x) * m).sum(-1))
    t0 = time.perf_counter()
    tokens_spec = jax.ShapeDtypeStruct((batch_size, width), np.int32)
    scored_spec = jax.ShapeDtypeStruct((batch_size, width - 1), np.float32)
    compiled = sums.lower(params, tokens_spec, scored_spec).compile()
    compile_s = time.perf_counter() - t0

    nll, done, t0 = 0.0, 0, time.perf_counter()
    hide = None if progress else True  # tqdm's None: hidden off a terminal
    bar = tqdm(total=len(targets), unit="tok", unit_scale=True, desc="eval", leave=False,
               disable=hide)  # fmt: skip
    with bar:
        for tokens, scored in batches(ids, windows, width, batch_size):
            nll += float(np.asarray(compiled(params, tokens, scored), np.float64).sum())
            n = int(scored.sum())
            done += n
            bar.update(n)
            bar.set_postfix_str(f"loss {nll / done:.4f}")
    seconds = time.perf_counter() - t0
    loss = nll / len(targets)
    return Result(
        loss=loss, perplexity=math.exp(min(loss, 700.0)),
        bits_per_byte=bits_per_byte(nll, n_bytes) if n_bytes else math.nan,
        bzip2_bits_per_byte=bzip2_bits_per_byte(text_bytes) if text_bytes else math.nan,
        tokens=len(targets), bytes=n_bytes, nll_sum=nll, text_tokens=len(ids),
        text_bytes=len(text_bytes), windows=len(windows), context=width,
        stride=min(stride, width), seconds=seconds, compile_seconds=compile_s,
        tokens_per_s=len(targets) / seconds if seconds > 0 else math.inf,
    )  # fmt: skip
