"""A map's term: its formula (unicode and LaTeX) and its FLOPs per token.

Every map states its own term (``Map.term``): a layer in its own file, a combinator
beside its definition. A term covers the map's *own* work only: a combinator's
children state theirs, and ``jaxformer.describe`` adds them up.

FLOPs are those of the forward pass, per token of a sequence of length T:
2 per multiply–add of a matrix product, 1 per elementwise arithmetic operation
(an add, a product, a max, a select), and 0 for transcendentals (exp, tanh, erf,
rsqrt), which XLA's ``cost_analysis`` reports apart as ``"transcendentals"``.
Two counts: ``flops``, what is computed (the hardware FLOPs: dense attention scores
every key, masked or not), and ``model_flops``, what the math needs (causal attention
half the keys, a sliding window its window); they differ only where a map computes what
its mask then discards. MFU is stated with the model's.

LaTeX lines use only what matplotlib's mathtext and MathJax both read
(no ``\\text``), so a formula renders in a notebook and without a TeX install.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .spaces import Space


@dataclass(frozen=True)
class Term:
    """A map's formula as lines of unicode ``text`` and of LaTeX ``tex``, and the FLOPs
    per token of its own work: computed (``flops``) and needed (``model_flops``, the same
    unless given)."""

    text: tuple[str, ...]
    tex: tuple[str, ...]
    flops: int = 0
    model_flops: int | None = None

    @property
    def model(self) -> int:
        return self.flops if self.model_flops is None else self.model_flops


def tex_name(name: str) -> str:
    """A map's name in LaTeX: ``resid_mid`` → ``\\mathrm{resid\\_mid}``; ∘ → ``\\circ``."""
    return r"\circ ".join(rf"\mathrm{{{escape(p)}}}" for p in name.split("∘"))


def escape(word: str) -> str:
    return word.replace("_", r"\_")


_GREEK = {"gamma": r"\gamma", "beta": r"\beta"}


def tex_param(name: str) -> str:
    """A parameter's symbol: ``W_Q`` → ``W_{Q}``, ``b_in`` → ``b_{\\mathrm{in}}``, gamma → γ."""
    if name in _GREEK:
        return _GREEK[name]
    base, _, sub = name.partition("_")
    if not sub:
        return rf"\mathrm{{{base}}}" if len(base) > 1 else base
    sub = sub if len(sub) == 1 else rf"\mathrm{{{escape(sub)}}}"
    return f"{base}_{{{sub}}}"


def tex_number(v: float) -> str:
    """``1e-05`` → ``10^{-5}``; other numbers as Python writes them (``%g``)."""
    e = math.log10(v) if v > 0 else 0.5
    return f"10^{{{round(e)}}}" if e == round(e) and abs(e) >= 3 else f"{v:g}"


def per_token(s: Space) -> int:
    """Coordinates of one token's slice of a point of ``s`` (the named axes dropped)."""
    return math.prod(a for a in s.shape if isinstance(a, int))
