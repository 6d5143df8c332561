"""LoRA as a reparametrisation: each target matrix W of a composite f is

    W = W₀ + (α / r) · A B,     A ∈ ℝ^{in × r},  B ∈ ℝ^{r × out},  B = 0 at init

(Hu et al. 2021), with W₀ the base weights and A, B the adapter. ``lora(f, rank, alpha,
targets)`` is f with params {θ₀ …, "lora": {path: {"A", "B"}}}: the same map at init (B = 0),
its faces (the cached decode, describe, the trace) f's on the effective weights. Training
only the adapter freezes every other parameter: ``adapter_only(params)`` labels them for
``optax.multi_transform``, so the optimizer state exists only for A and B.

A parameter is a linear map from its input axes to its output axes, after the axes it is
stacked on (L layers, E experts; each slice has its own A, B). With the residual width
``d``: a matrix whose last axis is d writes to the residual stream (W_O [H, k, d], W_out
[m, d], W_E [V, d]): its input is the other axes, its output d; any other reads from it
(W_Q [H, d, k], W_in [d, m], W_U [d, V]): its input is d, its output the other axes, in
order (W_Q's output is (H, k): HF's q_proj rows, head-major). So A B has the shape of W:
for W_Q, A [L, d, r] and B [L, r, H, k].

``merge(lora_f, params)`` gives (f, θ) with W = W₀ + (α/r) A B folded in: a plain model
(the same logits), for export.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Param, is_param
from ..core.wrappers import Wrapper

STACKED = ("L", "E")  # the axes a parameter is stacked on: one adapter per slice
ADAPTER = "lora"  # where the adapters live in the params


@dataclass(frozen=True)
class Target:
    """One adapted parameter: its path and how its axes split (stacked, input, output)."""

    path: tuple[str, ...]
    axes: tuple[str, ...]
    shape: tuple[int, ...]
    stacked: int  # the leading axes it is stacked on
    inputs: tuple[int, ...]  # the positions of its input axes, after the stacked ones
    outputs: tuple[int, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    def sizes(self, where) -> tuple[int, ...]:
        return tuple(self.shape[i] for i in where)

    def adapter_spec(self, rank: int) -> dict:
        lead, lead_axes = self.shape[: self.stacked], self.axes[: self.stacked]
        n_in = math.prod(self.sizes(self.inputs))
        # A as peft's kaiming_uniform(a=√5): standard deviation 1/√(3·fan_in); B = 0
        in_axes = tuple(self.axes[i] for i in self.inputs)
        out_axes = tuple(self.axes[i] for i in self.outputs)
        A = Param((*lead, *self.sizes(self.inputs), rank), (*lead_axes, *in_axes, "r"),
                  std=(3 * n_in) ** -0.5)  # fmt: skip
        B = Param((*lead, rank, *self.sizes(self.outputs)), (*lead_axes, "r", *out_axes))
        return {"A": A, "B": B}

    def delta(self, A, B, xp=jnp):
        """A B in W's axis order: [*stacked, *W's axes] (``xp``: jax.numpy or numpy)."""
        s, ni, no = self.stacked, len(self.inputs), len(self.outputs)
        letters = "abcdefghijklmnopq"
        lead, ins, outs = letters[:s], letters[s : s + ni], letters[s + ni : s + ni + no]
        by_axis = dict(zip(self.inputs, ins)) | dict(zip(self.outputs, outs))
        w = lead + "".join(by_axis[i] for i in range(s, len(self.shape)))
        return xp.einsum(f"{lead}{ins}z,{lead}z{outs}->{w}", A, B)


def _target(path: tuple[str, ...], p: Param) -> Target:
    where = ".".join(path)
    s = 0
    while s < len(p.axes) and p.axes[s] in STACKED:
        s += 1
    rest = p.axes[s:]
    if "d" not in rest or len(rest) < 2:
        raise ValueError(
            f"lora: {where} {p.axes} is not a matrix of the residual stream (no axis d, or "
            "one axis only); adapt the matrices W_Q, W_K, W_V, W_O, W_in, W_gate, W_out, "
            "W_E or W_U"
        )
    d = s + rest.index("d")
    if rest[-1] == "d":  # writes to the residual stream: the other axes in, d out
        inputs, outputs = tuple(range(s, len(p.axes) - 1)), (len(p.axes) - 1,)
    else:  # reads from it: d in, the other axes out
        inputs, outputs = (d,), tuple(i for i in range(s, len(p.axes)) if i != d)
    return Target(path, p.axes, p.shape, s, inputs, outputs)


def _matches(dotted: str, pattern: str) -> bool:
    return dotted.split(".")[-1] == pattern or fnmatch.fnmatchcase(dotted, pattern)


def find_targets(spec: dict, targets: tuple[str, ...]) -> tuple[Target, ...]:
    """The parameters of ``spec`` a target names (a name such as "W_Q", or a dotted glob such
    as "blocks.attn.W_*"); a target that names none is refused, listing the matrices."""
    flat = [
        (tuple(k.key for k in path), p)
        for path, p in jax.tree_util.tree_flatten_with_path(spec, is_leaf=is_param)[0]
    ]
    found, chosen = [], set()
    for t in targets:
        hits = [(path, p) for path, p in flat if _matches(".".join(path), t)]
        if not hits:
            names = sorted(".".join(path) for path, p in flat if path[-1].startswith("W_"))
            raise ValueError(f"lora: target {t!r} names no parameter; the matrices: {names}")
        for path, p in hits:
            if path not in chosen:
                chosen.add(path)
                found.append(_target(path, p))
    return tuple(found)


def names(text: str) -> tuple[str, ...]:
    """The names or globs of a comma- or space-separated list ("W_Q,W_V", "pos.* ln_f.*")."""
    return tuple(text.replace(",", " ").split())


@dataclass(frozen=True, repr=False)
class LoRA(Wrapper):
    """f with each target W reparametrised as W₀ + (α/r) A B (the module docstring)."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[Target, ...] = ()

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def spec(self):
        spec = self.f.spec_in()
        adapters: dict = {}
        for t in self.targets:
            node = adapters
            for k in t.path[:-1]:
                node = node.setdefault(k, {})
            node[t.path[-1]] = t.adapter_spec(self.rank)
        return {**spec, ADAPTER: adapters}

    def effective(self, params) -> dict:
        """f's params: W₀ + (α/r) A B at every target, the rest as they are."""
        base = {k: v for k, v in params.items() if k != ADAPTER}
        for t in self.targets:
            ab = at(params[ADAPTER], t.path)
            w = at(base, t.path)
            base = with_at(
                base, t.path, w + (self.scale * t.delta(ab["A"], ab["B"])).astype(w.dtype)
            )
        return base

    def inner(self, params):
        return self.f.own(self.effective(params))


def lora(
    f: Map, rank: int = 8, alpha: float = 16.0, targets: tuple[str, ...] = ("W_Q", "W_V")
) -> LoRA:
    """f with LoRA adapters of rank r and scale α/r on ``targets`` (names or dotted globs);
    checked when built: r ≥ 1, α > 0, every target a matrix of f."""
    if isinstance(f, LoRA):
        raise ValueError("lora: the map is already adapted; merge it first (lora.merge)")
    if not (isinstance(rank, int) and rank >= 1):
        raise ValueError(f"lora: rank {rank!r} must be a positive integer, e.g. 8")
    if not alpha > 0:
        raise ValueError(f"lora: alpha {alpha!r} must be positive, e.g. 2 × the rank")
    spec = f.spec_in()
    if ADAPTER in spec:
        raise ValueError(f"lora: {f.name} already has params under {ADAPTER!r}")
    return LoRA(f, rank, float(alpha), find_targets(spec, tuple(targets)))


def adapter_only(params) -> dict:
    """The labels that train the adapter alone: "trained" under ``lora``, else "frozen"."""
    # by path, not by dict: optax calls it on its own stand-ins for the params, too
    under = lambda path: getattr(path[0], "key", None) == ADAPTER
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "trained" if under(path) else "frozen", params
    )


def merge(adapted: LoRA, params) -> tuple[Map, dict]:
    """(f, θ): the base map and its params with every adapter folded in (W₀ + (α/r) A B)."""
    return adapted.f, adapted.effective(params)


def at(tree, path: tuple[str, ...]):
    """The node of ``tree`` at ``path``."""
    for k in path:
        tree = tree[k]
    return tree


def with_at(tree: dict, path: tuple[str, ...], value) -> dict:
    """A copy of ``tree`` with the node at ``path`` set to ``value``."""
    head, *rest = path
    return {**tree, head: with_at(tree[head], tuple(rest), value) if rest else value}
