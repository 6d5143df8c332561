"""Evaluation: a checkpoint's loss on a text, as ``jaxformer eval`` reports it.

windows.py     which window scores which token (sliding windows, HF's perplexity guide)
perplexity.py  loss (nats/token), perplexity, bits per byte, bzip2 -9's, tokens/s
cli.py         `jaxformer eval --checkpoint RUN|HF_DIR --data FILE_OR_DIR`

from jaxformer.interop import load_checkpoint
from jaxformer.evaluation import evaluate
config, params, tok = load_checkpoint("runs/tiny")
print(evaluate(config, params, tok, open("text.txt").read(), stride=128).bits_per_byte)

It sits above ``train``, whose loss (``train.loss``) and text reading (``train.data``) it
uses, and reads checkpoints through ``interop.load_checkpoint`` (a run or an HF directory).
"""

from .perplexity import Result, evaluate, tokenize
from .windows import check_window, plan

__all__ = ["Result", "check_window", "evaluate", "plan", "tokenize"]
