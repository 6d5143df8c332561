"""describe's three renderings: text, Markdown and LaTeX (mathtext, pdflatex, notebooks)."""

import re
import subprocess
import sys

import matplotlib
import pytest
from matplotlib.mathtext import MathTextParser

from jaxformer import Config, build
from jaxformer.describe import chain, describe, latex_document
from jaxformer.describe.render import shape_tex, space_tex
from jaxformer.layers import LayerNorm
from jaxformer.models.presets import PRESETS

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def gpt2():
    return build(PRESETS["gpt2-small"])


@pytest.fixture(scope="module")
def llama():
    return build(PRESETS["llama-tiny"])


def test_text(gpt2):
    out = describe(gpt2)
    lines = out.splitlines()
    assert lines[0] == "gpt2: V^{T} → ℝ^{T×50257}  (|V| = 50257, T ≤ 1024)"
    assert lines[1].startswith("124,439,808 parameters, ") and "at T = 1024" in lines[1]
    assert "tied: W_U = W_Eᵀ" in lines[1]
    for row in [
        r"^1 +embed +V\^\{T\} → ℝ\^\{T×768\} +W_E \[V=50257, d=768\] +38,597,376 +0$",
        r"^3 +blocks ×12 +ℝ\^\{T×768\} → ℝ\^\{T×768\} +85,054,464 ",
        r"^3\.1\.1\.2 +attn +ℝ\^\{T×768\} → ℝ\^\{T×768\} +W_Q \[H=12, d=768, k=64\] +2,362,368 ",
        r"^ +A\^h = softmax\(causal\(q\^h k\^hᵀ / √64\)\)$",
        r"^5 +unembed .* W_U = W_Eᵀ \(tied\) +0 ",
        r"^ +total +124,439,808 ",
    ]:
        assert any(re.match(row, line) for line in lines), row


def test_markdown(llama):
    md = describe(llama, "markdown")
    c = chain(llama)
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(c.rows) + 1  # head, rule, the rows, the total
    assert all(line.count("|") == 8 for line in table)  # no stray "|" inside a cell
    assert r"$x \mapsto \sum_{h=1}^{8} A^h v^h W_O^h$" in md
    assert "`W_K [G=2, d=256, k=32]`" in md and "**19,400,960**" in md


def tex_lines(model):
    c = chain(model)
    for r in c.rows:
        yield from r.term.tex
        yield space_tex(r.domain)
        yield from (shape_tex(p) for p in r.params)


def test_every_formula_renders_with_mathtext():
    """Each formula typesets without TeX (matplotlib's mathtext), for every layer variant."""
    parser = MathTextParser("path")
    with pytest.raises(ValueError):
        parser.parse(r"$\notacommand{x}$")  # the check is not vacuous
    variants = [Config(activation=a, positional="sinusoidal", n_layers=1) for a in
                ("gelu", "relu", "silu")]  # fmt: skip
    seen = {t for cfg in [*PRESETS.values(), *variants] for t in tex_lines(build(cfg))}
    assert len(seen) > 50
    for t in seen:
        parser.parse(f"${t}$")


def test_latex_is_ascii_display_math(gpt2):
    tex = describe(gpt2, "latex")
    assert tex.isascii() and tex.startswith("$$\n") and tex.endswith("$$\n")
    assert tex.count(r"\begin{array}") == tex.count(r"\end{array}")
    assert r"124{,}439{,}808" in tex


def test_latex_compiles(tmp_path, gpt2, llama, pdflatex):
    for name, model in [("gpt2", gpt2), ("llama", llama)]:
        (tmp_path / f"{name}.tex").write_text(latex_document(chain(model)))
        run = subprocess.run(
            [pdflatex, "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-2000:]
        assert (tmp_path / f"{name}.pdf").stat().st_size > 0


def test_notebook_display(llama):
    """IPython's display machinery (what a notebook cell runs) shows the chain."""
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(llama)
    assert data["text/markdown"] == describe(llama, "markdown")
    assert data["text/latex"] == describe(llama, "latex")
    assert data["text/plain"] == repr(llama)
    leaf, _ = DisplayFormatter().format(LayerNorm(8))  # a bare layer displays itself too
    assert "γ" in describe(LayerNorm(8)) and "| 1 | ln |" in leaf["text/markdown"]


def test_a_map_displays_itself_once_jaxformer_is_imported():
    # core imports nothing above it (the import-linter contracts in `make test`): describe
    # fills core's display hook when the package is imported
    code = (
        "import jaxformer; from jaxformer.layers import LayerNorm; "
        "import sys; sys.exit('| 1 | ln |' not in LayerNorm(8)._repr_markdown_())"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_a_map_without_a_term_is_refused_and_a_subclass_inherits_its_term():
    from dataclasses import dataclass

    from jaxformer.core import FaceError, Map, Real, compose

    @dataclass(frozen=True, repr=False)
    class Double(Map):
        name: str = "double"
        domain = property(lambda self: Real("T", 8))
        codomain = property(lambda self: Real("T", 8))

        def apply(self, params, x):
            return 2 * x

    @dataclass(frozen=True, repr=False)
    class MyNorm(LayerNorm):  # inherits LayerNorm's term
        pass

    from jaxformer import tokenwise

    c = chain(tokenwise(MyNorm(8)), T=4)
    assert c.rows[0].term.text[0].startswith("x_t ↦ γ ⊙") and c.rows[0].flops == 7 * 8
    with pytest.raises(FaceError, match=r"'double' \(Double\) has no term face"):
        describe(compose(Double(), tokenwise(MyNorm(8))))


def test_bad_arguments(llama):
    with pytest.raises(ValueError, match="format must be one of"):
        describe(llama, "html")
    with pytest.raises(ValueError, match="exceeds the context 512"):
        describe(llama, T=513)
    with pytest.raises(ValueError, match="positive int"):
        describe(llama, T=0)
    with pytest.raises(TypeError, match="a Map or a Config"):
        describe("gpt2-small")
    assert describe(PRESETS["llama-tiny"]) == describe(llama)  # a Config is built first
