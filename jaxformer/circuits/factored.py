"""Low-rank matrices kept factored: M = A B, never formed unless asked.

``FactoredMatrix(A, B)`` stands for M = A B with A: [..., m, r], B: [..., r, n]
(leading axes batch, e.g. [L, H]). The circuits of a head are products of thin
matrices — W_QK^h = W_Q^h W_K^hᵀ and W_OV^h = W_V^h W_O^h are d×d of rank k — and
the token-level circuits W_E W_QK W_Eᵀ are V×V, so keeping them factored makes
their norms, spectra and products cost O((m+n)·r²) instead of O(m·n·min(m,n)).

It is a pytree (A and B are its leaves), so it passes through ``jit`` and ``vmap``.
Products broadcast their batch axes, so ``OV[:, :, None, None] @ QK[None, None]`` is
every pair of heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp


def _T(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, -1, -2)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class FactoredMatrix:
    """M = A B.   A: [..., m, r], B: [..., r, n] → M: [..., m, n] of rank ≤ r (the batch
    axes of A and B broadcast)."""

    A: jax.Array
    B: jax.Array

    __array_ufunc__ = None  # numpy defers ``ndarray @ M`` to ``M.__rmatmul__``

    def __post_init__(self):
        if not (hasattr(self.A, "shape") and hasattr(self.B, "shape")):
            return  # a pytree of something else (in_axes specs, tree.map results)
        a, b = self.A.shape, self.B.shape
        try:
            if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
                raise ValueError
            batch = jnp.broadcast_shapes(a[:-2], b[:-2])
        except ValueError:
            raise ValueError(
                f"FactoredMatrix needs A: [..., m, r] and B: [..., r, n] with broadcastable "
                f"batch axes, got A {a} and B {b}"
            ) from None
        # broadcast the batch axes once, so indexing and products see one batch shape
        object.__setattr__(self, "A", jnp.broadcast_to(self.A, batch + a[-2:]))
        object.__setattr__(self, "B", jnp.broadcast_to(self.B, batch + b[-2:]))

    # -- shape -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.A.shape[:-1], self.B.shape[-1])

    @property
    def rank_bound(self) -> int:
        """r, the inner dimension: rank(M) ≤ r."""
        return self.A.shape[-1]

    def __getitem__(self, index) -> FactoredMatrix:
        """Index the batch axes only: ``W_OV[l, h]`` is head h of layer l; ``None`` adds
        a batch axis."""
        n_batch = self.A.ndim - 2
        idx = index if isinstance(index, tuple) else (index,)
        if len([i for i in idx if i is not None]) > n_batch or any(i is Ellipsis for i in idx):
            raise IndexError(f"index {index!r} must address only the {n_batch} batch axes")
        return FactoredMatrix(self.A[index], self.B[index])

    # -- algebra -----------------------------------------------------------------
    @property
    def dense(self) -> jax.Array:
        """A B, formed."""
        return self.A @ self.B

    @property
    def T(self) -> FactoredMatrix:
        """Mᵀ = Bᵀ Aᵀ."""
        return FactoredMatrix(_T(self.B), _T(self.A))

    def __matmul__(self, other) -> FactoredMatrix:
        """A B · C stays factored: (A, B C) for a dense C; for C = C₁ C₂ factored the
        middle product B C₁ is absorbed on the side that keeps the smaller inner rank."""
        if isinstance(other, FactoredMatrix):
            mid = self.B @ other.A  # [..., r, s]
            if self.rank_bound <= other.rank_bound:
                return FactoredMatrix(self.A, mid @ other.B)
            return FactoredMatrix(self.A @ mid, other.B)
        return FactoredMatrix(self.A, self.B @ other)

    def __rmatmul__(self, other) -> FactoredMatrix:
        """C · A B = (C A) B."""
        return FactoredMatrix(other @ self.A, self.B)

    def __add__(self, other: FactoredMatrix) -> FactoredMatrix:
        """A₁B₁ + A₂B₂ = [A₁ A₂] [B₁; B₂] (the inner ranks add)."""
        batch = jnp.broadcast_shapes(self.shape[:-2], other.shape[:-2])
        A1, A2 = (jnp.broadcast_to(X, batch + X.shape[-2:]) for X in (self.A, other.A))
        B1, B2 = (jnp.broadcast_to(X, batch + X.shape[-2:]) for X in (self.B, other.B))
        return FactoredMatrix(jnp.concatenate([A1, A2], -1), jnp.concatenate([B1, B2], -2))

    def __mul__(self, c) -> FactoredMatrix:
        """Scalar multiple c·M (c broadcasts over the batch axes)."""
        return FactoredMatrix(self.A * jnp.asarray(c)[..., None, None], self.B)

    __rmul__ = __mul__

    # -- invariants --------------------------------------------------------------
    def norm(self) -> jax.Array:
        """Frobenius norm ‖A B‖_F = sqrt(tr(AᵀA · B Bᵀ)), from two r×r Gram matrices.   [...]"""
        G_A = _T(self.A) @ self.A
        G_B = self.B @ _T(self.B)
        return jnp.sqrt(jnp.maximum(jnp.sum(G_A * G_B, (-1, -2)), 0.0))

    def svd(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Thin SVD M = U diag(S) Vh with U: [..., m, q], S: [..., q], Vh: [..., q, n],
        q = min(m, r, n), from QR of both factors and the SVD of a small core:
        A = Q_A R_A, Bᵀ = Q_B R_B, R_A R_Bᵀ = u s vh ⇒ U = Q_A u, Vh = vh Q_Bᵀ."""
        Q_A, R_A = jnp.linalg.qr(self.A)
        Q_B, R_B = jnp.linalg.qr(_T(self.B))
        u, s, vh = jnp.linalg.svd(R_A @ _T(R_B), full_matrices=False)
        q = min(self.shape[-2], self.rank_bound, self.shape[-1])
        return (Q_A @ u)[..., :q], s[..., :q], (vh @ _T(Q_B))[..., :q, :]

    def eigenvalues(self) -> jax.Array:
        """The eigenvalues of a square M = A B that can be non-zero: those of the r×r
        matrix B A (AB and BA share their non-zero spectrum).   [..., r], complex."""
        if self.shape[-1] != self.shape[-2]:
            raise ValueError(f"eigenvalues need a square matrix, got shape {self.shape}")
        return jnp.linalg.eigvals(self.B @ self.A)

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={self.shape}, rank ≤ {self.rank_bound})"
