"""Spaces: the domains and codomains of maps.

A space is ``R^{a×b×…}`` (real arrays) or ``V^{a×…}`` (arrays of token ids in
``{0, …, n-1}``). Each axis is a fixed size (an ``int``) or a symbol (a ``str``
such as ``"T"``) that is bound when a point is checked; a symbol may carry an
upper bound (``T ≤ 1024``). Checks run when a map is traced, so under ``jit``
they cost nothing at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import chex
import jax
import jax.numpy as jnp
import numpy as np

Axis = int | str


class ShapeError(ValueError):
    """A point does not lie in the space a map expects, or two maps do not compose."""


@dataclass(frozen=True)
class Space:
    """``R^shape`` (``kind="real"``) or ``{0..n-1}^shape`` (``kind="index"``)."""

    shape: tuple[Axis, ...]
    kind: str = "real"
    n: int | None = None
    limits: tuple[tuple[str, int], ...] = field(default=(), compare=False)

    def __post_init__(self):
        if self.kind not in ("real", "index"):
            raise ValueError(f"Space kind must be 'real' or 'index', got {self.kind!r}")
        if self.kind == "index" and (self.n is None or self.n < 1):
            raise ValueError(f"an index space needs an alphabet size n >= 1, got {self.n!r}")
        for a in self.shape:
            if isinstance(a, int) and a < 0:
                raise ValueError(f"axis sizes must be >= 0, got {self.shape}")

    def __str__(self) -> str:
        dims = "×".join(str(a) for a in self.shape)
        base = f"ℝ^{{{dims}}}" if self.kind == "real" else f"V^{{{dims}}}"
        notes = ([f"|V|={self.n}"] if self.kind == "index" else []) + [
            f"{s}≤{m}" for s, m in self.limits
        ]
        return f"{base} ({', '.join(notes)})" if notes else base

    def same_as(self, other: Space) -> bool:
        """Equal as sets: same kind, alphabet and axes (limits are a domain's own business)."""
        return (self.kind, self.n, self.shape) == (other.kind, other.n, other.shape)

    def check(self, x, where: str, env: dict[str, int] | None = None) -> dict[str, int]:
        """Assert (with chex) that ``x`` lies in this space; bind symbols in ``env``.

        Raises ``ShapeError`` naming ``where`` (the map), the axis, the found and the
        expected size. Returns the extended symbol environment.
        """
        env = dict(env or {})
        shape = tuple(np.shape(x))
        if len(shape) != len(self.shape):
            raise ShapeError(
                f"{where}: expected a point of {self} (rank {len(self.shape)}), "
                f"got shape {shape} (rank {len(shape)})"
            )
        for i, (want, got) in enumerate(zip(self.shape, shape)):
            if isinstance(want, str):
                want = env.setdefault(want, got)
                limit = dict(self.limits).get(self.shape[i])
                if limit is not None and got > limit:
                    raise ShapeError(
                        f"{where}: axis {i} ({self.shape[i]}) has length {got}, "
                        f"above its limit {limit}; shorten the input to at most {limit}"
                    )
            if got != want:
                raise ShapeError(
                    f"{where}: axis {i} ({self.shape[i]}) has size {got}, expected {want} "
                    f"(a point of {self} was expected, got shape {shape})"
                )
        chex.assert_shape(x, tuple(env[a] if isinstance(a, str) else a for a in self.shape))
        self._check_dtype(x, where)
        return env

    def _check_dtype(self, x, where: str) -> None:
        dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
        # jnp.issubdtype knows bfloat16 is a float; numpy's does not.
        if self.kind == "index" and not jnp.issubdtype(dtype, jnp.integer):
            raise ShapeError(
                f"{where}: token ids must be integers, got dtype {dtype}; "
                "pass an int32 array, e.g. jnp.asarray(ids, jnp.int32)"
            )
        if self.kind == "real" and not jnp.issubdtype(dtype, jnp.inexact):
            raise ShapeError(f"{where}: expected a real (floating) array, got dtype {dtype}")

    def validate(self, x, where: str) -> None:
        """Host-side value check for concrete points (no-op on tracers).

        Inside ``jit`` an out-of-range index is silently clamped, so token ids are
        checked here, before they enter a compiled function.
        """
        if self.kind != "index" or isinstance(x, jax.core.Tracer):
            return
        a = np.asarray(x)
        if a.size and (a.min() < 0 or a.max() >= self.n):
            bad = int(a.min()) if a.min() < 0 else int(a.max())
            raise ValueError(
                f"{where}: token id {bad} is outside the vocabulary [0, {self.n}); "
                f"encode the text with the model's tokenizer (vocab size {self.n})"
            )


def Real(*shape: Axis, limits: dict[str, int] | None = None) -> Space:
    """``R^{shape}``, e.g. ``Real("T", 512)`` for a residual stream."""
    return Space(tuple(shape), "real", None, tuple(sorted((limits or {}).items())))


def Tokens(n: int, *shape: Axis, limits: dict[str, int] | None = None) -> Space:
    """``V^{shape}`` with ``|V| = n``, e.g. ``Tokens(50257, "T", limits={"T": 1024})``."""
    return Space(tuple(shape) or ("T",), "index", n, tuple(sorted((limits or {}).items())))
