"""Text → tokens, defined exactly: byte-level BPE with tiktoken's semantics.

    τ: str → V*,  τ(s) = BPE_ranks(split_pattern(s)) with special tokens cut out first

``Tokenizer.train`` learns the ranks from a corpus (``train.py``, ``count.py``); ``encode``
applies them (``encode.py``); ``files.py`` stores them as a ``.tiktoken`` file plus a header.

    tok = Tokenizer.train(text, vocab_size=8192, pattern="gpt2")
    ids = tok.encode("hello world")            # list[int], equal to tok.to_tiktoken().encode
    tok.save("runs/tok"); Tokenizer.load("runs/tok") == tok

``Tokenizer.from_hf(dir)`` reads an HF ``tokenizers`` BPE tokenizer (``tokenizer.json`` or
``vocab.json`` + ``merges.txt``) as an ``HFTokenizer`` (``hf_tokenizer.py``), whose ids are
exactly ``tokenizers``' own: HF merges by pair priority, not by rank (``pair_bpe.py``).
"""

from .hf_tokenizer import HFTokenizer
from .patterns import CL100K, GPT2, O200K, PATTERNS
from .tokenizer import ENDOFTEXT, Tokenizer

__all__ = ["CL100K", "ENDOFTEXT", "GPT2", "HFTokenizer", "O200K", "PATTERNS", "Tokenizer"]
