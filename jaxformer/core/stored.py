"""Matrices stored in fewer bits, for a decode loop that reads every weight once per token.

A decode step is a chain of products x ↦ x W, W ∈ R^{d×n} (in × out); at batch 1 each reads
all of W for d·n multiply-adds, so its time is the bytes of W over the memory bandwidth.
Stored in fewer bytes, W is read in fewer:

    float32    W                                                  4 bytes an entry
    bfloat16   Ŵ = bf16(W)   (round to nearest even)              2 bytes an entry
    int8       s_j = max_i |W_ij| / 127             (per output channel j; s_j = 1 if
                                                     the column is 0)
               Q_ij = round(W_ij / s_j) ∈ [−127, 127]
               Ŵ = Q diag(s)                                      1 byte an entry + n scales

and the product is  x Ŵ = (x Q) ⊙ s  (int8; bf16: x Ŵ), accumulated in float32, x in
float32: only the matrix is stored in fewer bits.

How the product reads the stored matrix (measured on XLA:CPU, jax 0.10): XLA:CPU has no
bf16 or int8 × float32 matrix-vector product. Written as ``x @ W.astype(f32)`` (or
``jnp.dot(x.astype(bf16), W, preferred_element_type=f32)``, or a mixed-dtype
``dot_general``), the compiler converts the whole W to float32 and, W being the same at
every step, hoists that convert out of the while loop: the loop then reads a float32 copy
(twice the memory, none of the bandwidth saved). So the matrix is stored as column blocks
of c columns, ``Q`` [n_blocks, d, c] (the last block padded with zero columns), and the
product is a ``lax.map`` over the blocks: each block converted (d·c ≤ ``BLOCK`` entries,
a block that stays in cache) and multiplied by x, inside the loop. The whole matrix is
read once per token in its stored dtype, and no float32 copy of it exists
(tests/generate/test_weight_storage.py reads the compiled loop for one). bf16 is kept as
its bits (uint16) and widened by integer ops, f32(u << 16), exact: of a bf16 array, XLA:CPU
moves the block's bf16 → f32 convert ahead of the block's slice and then out of both loops
(one float32 copy again); integer ops it leaves where they are.

``StoredMatrix`` is a pytree (Q and s its leaves) that a layer multiplies by as it does an
array: ``x @ W.astype(dtype)`` (``astype`` sets the product's dtype; nothing is converted).
Which of a layer's params are such matrices it states itself (``Map.matrices``).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

WEIGHTS = ("float32", "bfloat16", "int8")  # how ``store`` keeps a matrix
BLOCK = 2**17  # entries of one column block, d·c (512 KiB as float32: an L2 cache's worth)


def check_weights(weights, what: str) -> str:
    """``weights`` if it is one of ``WEIGHTS``; else a ValueError, one line naming the value
    and the choices (``what``: how the caller calls it, e.g. "generate: weights")."""
    if not isinstance(weights, str) or weights not in WEIGHTS:
        choices = ", ".join(repr(w) for w in WEIGHTS)
        raise ValueError(f"{what} must be one of {choices}, got {weights!r}")
    return weights


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class StoredMatrix:
    """Ŵ ∈ R^{d×n} as column blocks of its stored entries: ``Q`` [n_blocks, d, c], int8 or
    uint16 (the bf16 values' bits; the last block padded with zero columns), ``s`` [n]
    float32 per-column scales (int8; None for bf16: Ŵ = bf16 of the bits).
    ``x @ self`` is x Ŵ, x [..., d] → [..., n], in ``dtype``."""

    Q: jax.Array
    s: jax.Array | None
    n: int
    dtype: np.dtype = np.dtype(np.float32)

    __array_ufunc__ = None  # numpy's ``x @ self`` defers to ``__rmatmul__``, as jax's does

    def tree_flatten(self):
        return (self.Q, self.s), (self.n, self.dtype)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children, *aux)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.Q.shape[1], self.n)

    ndim = 2

    @property
    def nbytes(self) -> int:
        """The bytes a product reads: the blocks (padding included) and the scales."""
        return self.Q.nbytes + (0 if self.s is None else self.s.nbytes)

    def astype(self, dtype) -> StoredMatrix:
        """The same storage, its products given in ``dtype`` (a layer's compute dtype)."""
        return dataclasses.replace(self, dtype=np.dtype(dtype))

    def __rmatmul__(self, x):
        """x Ŵ = (x Q) ⊙ s: block by block, each block of Q converted to x's float dtype
        in cache and multiplied, accumulating in float32."""
        x = jnp.asarray(x)
        compute = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        x = x.astype(compute)
        block = lambda Q_dc: jnp.matmul(
            x, _widen(Q_dc, compute), preferred_element_type=jnp.float32
        )
        y = jax.lax.map(block, self.Q)  # [n_blocks, ..., c]
        y = jnp.moveaxis(y, 0, -2).reshape(*x.shape[:-1], -1)[..., : self.n]
        return (y if self.s is None else y * self.s).astype(self.dtype)

    def entries(self) -> jax.Array:
        """The stored entries as one matrix [d, n]: Q (int8), or the bf16 values."""
        nb, d, c = self.Q.shape
        Q = jnp.swapaxes(self.Q, 0, 1).reshape(d, nb * c)[:, : self.n]
        return jax.lax.bitcast_convert_type(Q, jnp.bfloat16) if Q.dtype == jnp.uint16 else Q

    def dense(self) -> jax.Array:
        """Ŵ [d, n] in float32 (for inspection: the product never forms it)."""
        W = self.entries().astype(jnp.float32)
        return W if self.s is None else W * self.s


def _widen(Q_dc, dtype):
    """One block's entries in ``dtype``: int8 converted; bf16 from its bits, u ↦ f32(u << 16)
    (exact)."""
    if Q_dc.dtype != jnp.uint16:
        return Q_dc.astype(dtype)
    bits = Q_dc.astype(jnp.uint32) << 16
    return jax.lax.bitcast_convert_type(bits, jnp.float32).astype(dtype)


def store(W, weights: str, block: int | None = None):
    """W [d, n] kept as ``weights`` says: float32, the array itself; bfloat16 or int8, a
    ``StoredMatrix`` of column blocks of ``block`` entries (default ``BLOCK``) at most (c a
    power of two, at least 8 columns: fewer blocks in a matrix wider than BLOCK / 8 rows)."""
    check_weights(weights, "store: weights")
    if weights == "float32":
        return W
    if np.ndim(W) != 2:
        raise ValueError(f"store: a matrix [d, n] is stored, got shape {np.shape(W)}")
    d, n = np.shape(W)
    Q, s = _blocks(jnp.asarray(W, jnp.float32), weights, _columns(d, n, block or BLOCK))
    return StoredMatrix(Q, s, n)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _blocks(W, weights: str, c: int):
    """(Q [n_blocks, d, c], s [n] or None): W's stored entries in column blocks of c."""
    d, n = W.shape
    if weights == "bfloat16":  # kept as its bits (see the module's docstring)
        Q, s = jax.lax.bitcast_convert_type(W.astype(jnp.bfloat16), jnp.uint16), None
    else:
        s = jnp.max(jnp.abs(W), axis=0) / 127
        s = jnp.where(s > 0, s, 1.0)  # a zero column: Q = 0 with any scale
        Q = jnp.clip(jnp.round(W / s), -127, 127).astype(jnp.int8)
    nb = -(-n // c)
    Q = jnp.pad(Q, ((0, 0), (0, nb * c - n)))
    return jnp.swapaxes(Q.reshape(d, nb, c), 0, 1), s


def _columns(d: int, n: int, block: int) -> int:
    """The block width c: the largest power of two with d·c ≤ block, at least 8, at most
    the power of two ≥ n (a narrow matrix is one block)."""
    c = max(8, 1 << max(0, int(np.log2(max(block // d, 1)))))
    return min(c, 1 << int(np.ceil(np.log2(n))))
