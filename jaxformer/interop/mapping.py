"""The tools both weight mappings share: checked tensor lookup and the head reshapes.

A checkpoint is a flat dict ``name → array``; a jaxformer model holds a pytree
whose attention weights carry an explicit head axis. ``Checkpoint.take`` hands
out each tensor once, checking its shape, so that after the mapping every
tensor is accounted for: a missing one, an extra one or a wrong shape is a
``ValueError`` that names the tensor, the expected and the found shape.
"""

from __future__ import annotations

import re

import numpy as np


class Checkpoint:
    """The tensors of one checkpoint, taken one by one with shape checks.

    Names are the full HF names of ``*ForCausalLM``; ``optional`` is the base
    model's prefix (``"transformer."``, ``"model."``), which a checkpoint saved
    from the base model (``GPT2Model``, as on the Hub's ``gpt2``) lacks.
    ``ignore`` matches buffers that some versions of transformers saved and
    that carry no parameters (causal masks, rotary frequencies).
    """

    def __init__(self, tensors: dict[str, np.ndarray], where: str, optional: str, ignore: str):
        self.tensors = dict(tensors)
        self.where = where
        self.optional = optional
        self.ignore = re.compile(ignore)

    def _key(self, name: str) -> str | None:
        names = (name, name.removeprefix(self.optional))
        return next((k for k in names if k in self.tensors), None)

    def has(self, name: str) -> bool:
        return self._key(name) is not None

    def take(self, name: str, *shape: int) -> np.ndarray:
        """Remove and return tensor ``name`` as float32, checking that it has ``shape``."""
        key = self._key(name)
        if key is None:
            raise ValueError(
                f"{self.where}: missing tensor {name!r} (expected shape {shape}); "
                "the checkpoint does not match its config.json"
            )
        a = self.tensors.pop(key)
        if tuple(a.shape) != shape:
            raise ValueError(
                f"{self.where}: tensor {key!r} has shape {tuple(a.shape)}, expected {shape} "
                "from config.json; the config and the weights disagree"
            )
        a = np.asarray(a, np.float32)
        if not np.isfinite(a).all():
            raise ValueError(f"{self.where}: tensor {key!r} holds NaN or infinite values")
        return a

    def unembedding(self, W_E: np.ndarray, tied: bool, embed_name: str) -> dict:
        """The unembedding's params: ``{"W_U": lm_head.weightᵀ}``, or ``{}`` when tied; a
        tied checkpoint may hold lm_head.weight too (some versions save the copy), which
        must then equal the embedding ``embed_name``."""
        V, d = W_E.shape
        if not tied:
            return {"W_U": self.take("lm_head.weight", V, d).T}
        if self.has("lm_head.weight") and not np.array_equal(
            self.take("lm_head.weight", V, d), W_E
        ):
            raise ValueError(
                f"{self.where}: config.json says tie_word_embeddings=true but lm_head.weight "
                f"differs from {embed_name}; set tie_word_embeddings=false to keep both"
            )
        return {}

    def finish(self) -> None:
        """Fail if any tensor was not used (other than ignorable buffers)."""
        extra = sorted(k for k in self.tensors if not self.ignore.search(k))
        if extra:
            shown = ", ".join(f"{k} {tuple(self.tensors[k].shape)}" for k in extra[:8])
            more = f" and {len(extra) - 8} more" if len(extra) > 8 else ""
            raise ValueError(
                f"{self.where}: unexpected tensor(s) {shown}{more}; the checkpoint holds "
                "weights that config.json does not describe (a different architecture?)"
            )


def split_heads(W: np.ndarray, n: int) -> np.ndarray:
    """[d, n·k] → [n, d, k]: the columns of head h are h·k … (h+1)·k − 1."""
    d, nk = W.shape
    return W.reshape(d, n, nk // n).transpose(1, 0, 2)


def merge_heads(W_ndk: np.ndarray) -> np.ndarray:
    """[n, d, k] → [d, n·k], the inverse of ``split_heads``."""
    n, d, k = W_ndk.shape
    return W_ndk.transpose(1, 0, 2).reshape(d, n * k)


def stack(layers: list[dict]) -> dict:
    """Per-layer pytrees → one pytree with a leading L axis (the layout of ``repeat``)."""
    first = layers[0]
    if isinstance(first, dict):
        return {k: stack([layer[k] for layer in layers]) for k in first}
    return np.stack(layers)


def unstack(tree: dict, L: int) -> list[dict]:
    """One pytree with a leading L axis → L per-layer pytrees."""
    if isinstance(tree, dict):
        parts = {k: unstack(v, L) for k, v in tree.items()}
        return [{k: parts[k][i] for k in parts} for i in range(L)]
    return [tree[i] for i in range(L)]
