"""docs/MATH.md names real code: every backticked ``jaxformer.…`` reference resolves."""

import importlib
import re
import subprocess
from pathlib import Path

import pytest

import jaxformer.layers
from jaxformer.core import Map

REPO = Path(__file__).resolve().parents[2]
MATH = (REPO / "docs" / "MATH.md").read_text()
REFS = sorted(set(re.findall(r"`(jaxformer(?:\.\w+)+)`", MATH)))


def resolve(ref: str):
    """Import the longest module prefix of ``ref``, then getattr the rest."""
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(ref)


@pytest.mark.parametrize("ref", REFS)
def test_reference_resolves(ref):
    resolve(ref)


def test_every_layer_and_the_tokenizer_are_named():
    assert len(REFS) >= 40
    layers = {  # every layer that states its term
        f"jaxformer.layers.{name}"
        for name, t in vars(jaxformer.layers).items()
        if isinstance(t, type) and issubclass(t, Map) and t.term is not Map.term
    }
    assert len(layers) == 12 and layers <= set(REFS)
    tokenizer = ("jaxformer.tokenizer.Tokenizer.encode", "jaxformer.tokenizer.encode.bpe")
    core = ("jaxformer.layers.rope", "jaxformer.core.residual", "jaxformer.core.tie")
    assert set(tokenizer + core) <= set(REFS)


def test_every_formula_compiles(tmp_path, pdflatex):
    """Each $…$ and $$…$$ of MATH.md typesets with pdflatex (amsmath, amssymb)."""
    text = re.sub(r"```.*?```", "", MATH, flags=re.S)
    display = re.findall(r"\$\$(.+?)\$\$", text, re.S)
    inline = re.findall(r"(?<!\$)\$([^$\n]+)\$(?!\$)", re.sub(r"\$\$.+?\$\$", "", text, flags=re.S))
    assert len(display) > 15 and len(inline) > 100
    body = "\n".join([*(f"\\[{m}\\]" for m in display), *(f"${m}$\\par" for m in inline)])
    doc = (
        "\\documentclass{article}\\usepackage{amsmath,amssymb}\\begin{document}\n"
        + body
        + "\n\\end{document}\n"
    )
    (tmp_path / "math.tex").write_text(doc)
    run = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "math.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
