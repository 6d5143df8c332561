"""The families, one file each; importing this package registers them all."""

from . import gpt2, llama

__all__ = ["gpt2", "llama"]
