"""A chain rendered as unicode text (a terminal), Markdown (a notebook, GitHub) or LaTeX.

Each row: number, name (indented by nesting; ``×L`` on a repeat), domain → codomain,
formula, parameters with their shapes, parameter count and FLOPs per token; the
totals close the table. Markdown writes formulas as ``$…$`` (MathJax); LaTeX is one
``array`` in display math, which MathJax and pdflatex (amsmath, amssymb) both read.
"""

from __future__ import annotations

import textwrap

from ..core import Space, tex_name, tex_param
from .chain import Chain, ParamRow, Row

LEGEND = (
    "FLOPs per token of the forward pass: 2 per multiply–add, 1 per elementwise operation, "
    "0 per exp/tanh/erf/rsqrt; all T×T attention scores are counted (the causal mask is "
    "applied, not exploited). Counts and FLOPs of a group include its members; inside a "
    "group ×L they are per copy."
)


# -- spaces and numbers ------------------------------------------------------------------


def space_text(s: Space) -> str:
    dims = "×".join(str(a) for a in s.shape)
    return f"ℝ^{{{dims}}}" if s.kind == "real" else f"V^{{{dims}}}"


def space_tex(s: Space) -> str:
    dims = r"\times ".join(str(a) for a in s.shape)
    return rf"\mathbb{{R}}^{{{dims}}}" if s.kind == "real" else f"V^{{{dims}}}"


def notes_text(s: Space) -> str:
    notes = ([f"|V| = {s.n}"] if s.kind == "index" else []) + [f"{a} ≤ {m}" for a, m in s.limits]
    return f"  ({', '.join(notes)})" if notes else ""


def notes_tex(s: Space) -> str:
    notes = [rf"\lvert V\rvert = {s.n}"] if s.kind == "index" else []
    notes += [rf"{a} \leq {m}" for a, m in s.limits]
    sep = r",\ "
    return rf"\quad ({sep.join(notes)})" if notes else ""


def number(n: int) -> str:
    return f"{n:,}"


def number_tex(n: int) -> str:
    return f"{n:,}".replace(",", "{,}")


def shape_text(p: ParamRow) -> str:
    dims = ", ".join(f"{a}={n}" for a, n in zip(p.axes, p.shape))
    return f"{p.tied} (tied)" if p.tied else f"{p.name} [{dims}]"


def shape_tex(p: ParamRow) -> str:
    sym = tex_param(p.name.split(".")[-1])
    if p.tied:
        return sym + r"\ (\mathrm{tied})"
    dims = r"\times ".join(map(str, p.shape)) or "1"
    return rf"{sym} \in \mathbb{{R}}^{{{dims}}}"


def title(r: Row) -> str:
    return r.name + (f" ×{r.copies}" if r.copies > 1 else "")


def summary(c: Chain, math: bool = False) -> str:
    """The totals line; ``math`` writes T and the ties as ``$…$`` (Markdown)."""
    T = f"$T = {c.T}$" if math else f"T = {c.T}"
    ties = [f"${t.tex[0]}$" if math else t.text[0] for t in c.ties]
    return (
        f"{number(c.count)} parameters{active(c)}, {number(c.flops)} FLOPs per token at {T} "
        f"(forward pass{model_flops(c)})" + "".join(f"; tied: {t}" for t in ties)
    )


def model_flops(c: Chain) -> str:
    """ "; the math needs N" where what is computed exceeds it (masked keys scored)."""
    return "" if c.model_flops == c.flops else f"; its math needs {number(c.model_flops)}"


def active(c: Chain) -> str:
    """ " (N active per token)" for a model whose tokens use fewer than all its parameters."""
    return f" ({number(c.active)} active per token)" if c.active != c.count else ""


# -- text ----------------------------------------------------------------------------------


def text(c: Chain) -> str:
    head = ["#", "map", "domain → codomain", "parameters", "count", "FLOPs/token"]
    cells = [
        [
            r.number,
            "  " * r.depth + title(r),
            f"{space_text(r.domain)} → {space_text(r.codomain)}",
            shape_text(r.params[0]) if r.params else "",
            number(r.count),
            number(r.flops),
        ]
        for r in c.rows
    ]
    total = ["", "total", "", "", number(c.count), number(c.flops)]
    params = [p for r in c.rows for p in r.params]
    w = [max(len(row[i]) for row in [head, total, *cells]) for i in range(6)]
    w[3] = max([w[3], *(len(shape_text(p)) for p in params)])

    def line(row: list[str]) -> str:
        left = "  ".join(s.ljust(w[i]) for i, s in enumerate(row[:4]))
        return f"{left}  {row[4].rjust(w[4])}  {row[5].rjust(w[5])}".rstrip()

    pad = w[0] + w[1] + w[2] + 6  # where the parameter column starts
    out = [
        f"{c.name}: {space_text(c.domain)} → {space_text(c.codomain)}{notes_text(c.domain)}",
        summary(c),
        "",
        line(head),
        "─" * len(line(head)),
    ]
    for r, row in zip(c.rows, cells):
        if r.depth == 0 and r is not c.rows[0]:
            out.append("")
        out.append(line(row))
        out += [" " * pad + shape_text(p) for p in r.params[1:]]
        indent = " " * (w[0] + 2 + 2 * r.depth + 2)
        out += [indent + f for f in r.term.text]
    out += ["─" * len(line(head)), line(total), "", textwrap.fill(LEGEND, len(line(head)))]
    return "\n".join(out) + "\n"


# -- Markdown -------------------------------------------------------------------------------


def markdown(c: Chain) -> str:
    sig = rf"{space_tex(c.domain)} \to {space_tex(c.codomain)}{notes_tex(c.domain)}"
    out = [
        f"**{c.name}**: ${sig}$",
        "",
        summary(c, math=True),
        "",
        "| # | map | domain → codomain | formula | parameters | count | FLOPs/token |",
        "|---|---|---|---|---|--:|--:|",
    ]
    for r in c.rows:
        spaces = rf"${space_tex(r.domain)} \to {space_tex(r.codomain)}$"
        formula = "<br>".join(f"${t}$" for t in r.term.tex)
        params = "<br>".join(f"`{shape_text(p)}`" for p in r.params)
        name = "&emsp;" * r.depth + title(r)
        cells = [r.number, name, spaces, formula, params, number(r.count), number(r.flops)]
        out.append("| " + " | ".join(cells) + " |")
    out.append(f"| | **total** | | | | **{number(c.count)}** | **{number(c.flops)}** |")
    return "\n".join([*out, "", LEGEND]) + "\n"


# -- LaTeX ----------------------------------------------------------------------------------


def _stack(lines) -> str:
    lines = list(lines)
    if len(lines) == 1:
        return lines[0]
    return r"\begin{array}{l} " + r" \\ ".join(lines) + r" \end{array}"


def latex(c: Chain) -> str:
    """Display math: an outer one-column array holding the title and the table."""
    sig = rf"{tex_name(c.name)}:\ {space_tex(c.domain)} \to {space_tex(c.codomain)}"
    ties = "".join(rf",\quad {t.tex[0]}" for t in c.ties)
    head = [r"\#", r"\text{map}", r"\text{domain} \to \text{codomain}", r"\text{formula}"]
    head += [r"\text{parameters}", r"\text{count}", r"\text{FLOPs/token}"]
    rows = [" & ".join(head) + r" \\ \hline"]
    for r in c.rows:
        name = r"\quad " * r.depth + tex_name(r.name)
        name += rf"\ \times {r.copies}" if r.copies > 1 else ""
        cells = [
            r.number,
            name,
            rf"{space_tex(r.domain)} \to {space_tex(r.codomain)}",
            _stack(r.term.tex),
            _stack(shape_tex(p) for p in r.params) if r.params else "",
            number_tex(r.count),
            number_tex(r.flops),
        ]
        rows.append(" & ".join(cells) + r" \\")
    rows.append(rf"\hline & \text{{total}} & & & & {number_tex(c.count)} & {number_tex(c.flops)}")
    table = "\\begin{array}{lllllrr}\n" + "\n".join(rows) + "\n\\end{array}"
    summary_tex = (
        rf"\text{{{number_tex(c.count)} parameters{active(c)}, {number_tex(c.flops)} FLOPs per "
        r"token at }"
        rf"T = {c.T}{ties}"
    )
    return (
        "$$\n\\begin{array}{l}\n"
        + rf"{sig}{notes_tex(c.domain)} \\"
        + "\n"
        + rf"{summary_tex} \\[1ex]"
        + "\n"
        + table
        + "\n\\end{array}\n$$\n"
    )


def latex_document(c: Chain) -> str:
    """A standalone document for pdflatex (landscape; the table is wide)."""
    return (
        "\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
        "\\usepackage[landscape,margin=1cm]{geometry}\n\\begin{document}\n\\small\\renewcommand{\\arraystretch}{1.3}\n"
        + latex(c).replace("$$\n", "\\[\n", 1).replace("\n$$", "\n\\]", 1)
        + "\n"
        + LEGEND.replace("×", r"$\times$").replace("–", "--")
        + "\n\\end{document}\n"
    )


RENDERERS = {"text": text, "markdown": markdown, "latex": latex}
