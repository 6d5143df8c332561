"""The attention-pattern view: layers × heads × query × key, one page.

    attention_view(pattern, tokens) -> View     pattern [H, T, T] or [L, H, T, T]

The page has a button per layer and per head (each head's button a thumbnail of its
pattern), the chosen head's query × key heat map in SVG (rows are queries, columns keys),
a tooltip "query [i] → key [j]: weight" on a cell, and a token's row or column
highlighted when the pointer is on its label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxformer.views.html import View, check_finite, check_tokens, numbers, page, real_float32

# Probabilities may overshoot [0, 1] by rounding (a float32 softmax row sums to 1 ± ulp).
_SLACK = 1e-5


def _select(name: str, chosen: Sequence[int] | None, n: int) -> list[int]:
    """Indices into an axis of length ``n`` (all of them when ``chosen`` is None)."""
    if chosen is None:
        return list(range(n))
    chosen = [int(i) for i in chosen]
    if not chosen:
        raise ValueError(f"{name}=[] selects nothing; give at least one index in [0, {n})")
    for i in chosen:
        if not 0 <= i < n:
            raise ValueError(f"{name} holds {i}, outside [0, {n}); give indices in [0, {n})")
    return chosen


def attention_view(
    pattern,
    tokens: Sequence[str],
    *,
    title: str = "attention pattern",
    heads: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
) -> View:
    """Attention probabilities [H, T, T] or [L, H, T, T] (rows queries, columns keys) and
    the T token strings → an interactive :class:`View`.

    ``pattern`` is e.g. ``points["blocks"]["attn.pattern"]`` of ``model.trace(params, ids)``
    (all layers) or one layer of it. ``heads`` and ``layers`` pick which to show (their
    original indices label the buttons). Every weight shown is in the page, so a long
    context makes a large file: T=128, 12 × 12 heads is about 20 MB."""
    p = np.asarray(pattern)
    many_layers = p.ndim == 4
    if p.ndim == 3:
        p = p[None]
    elif p.ndim != 4:
        raise ValueError(
            f"pattern has shape {p.shape}; give [H, T, T] (one layer) or [L, H, T, T] "
            "(e.g. points['blocks']['attn.pattern'] of model.trace)"
        )
    L, H, Tq, Tk = p.shape
    if Tq != Tk:
        raise ValueError(
            f"pattern has shape {tuple(np.shape(pattern))}: {Tq} queries but {Tk} keys; "
            "give the square self-attention pattern [.., T, T]"
        )
    tokens = check_tokens("tokens", tokens)
    if len(tokens) != Tq:
        raise ValueError(
            f"tokens has {len(tokens)} entries but pattern has T={Tq}; give one string per position"
        )
    if 0 in p.shape:
        raise ValueError(f"pattern has shape {p.shape}; give at least one head and one token")
    p = real_float32("pattern", p)
    check_finite("pattern", p)
    lo, hi = float(p.min()), float(p.max())
    if lo < -_SLACK or hi > 1 + _SLACK:
        raise ValueError(
            f"pattern holds values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; give attention "
            "probabilities (the softmax of the scores), not the scores"
        )
    ls = _select("layers", layers, L) if many_layers else [0]
    hs = _select("heads", heads, H)
    p = p[np.ix_(ls, hs)]
    payload = {
        "tokens": tokens,
        "layers": [f"L{i}" for i in ls] if many_layers else None,
        "heads": [f"H{i}" for i in hs],
        "pattern": numbers(p),  # [L, H, T, T]
    }
    cell = _cell_px(Tq)
    return View(page(title, payload, _BODY, _SCRIPT, _STYLE), height=Tq * cell + 320)


def _cell_px(T: int) -> int:
    """A heat-map cell's side in pixels (CELL in the page's script): the map about 560 px
    wide, cells 6–28 px."""
    return max(6, min(28, 560 // max(T, 1)))


_STYLE = """
#layers, #heads { margin-bottom: 6px; }
button.head { display: inline-flex; flex-direction: column; align-items: center; }
canvas.thumb { width: 40px; height: 40px; image-rendering: pixelated; border: 1px solid #ccc;
               margin-bottom: 2px; }
#map text { font: 12px system-ui, sans-serif; fill: #222; cursor: default; }
#map text.hot { fill: #c0392b; font-weight: bold; }
rect.hl { fill: none; stroke: #c0392b; stroke-width: 1.5; pointer-events: none; }
#legend { display: flex; align-items: center; gap: 6px; margin-top: 6px; }
#legend .bar { width: 160px; height: 10px; border: 1px solid #ccc;
               background: linear-gradient(to right, rgb(255,255,255), rgb(8,48,107)); }
"""

_BODY = """
<div id="layers"></div>
<div id="heads"></div>
<div id="map"><svg id="svgmap"></svg></div>
<div id="legend"><span>0</span><span class="bar"></span><span>1</span>
<span>rows: queries, columns: keys</span></div>
"""

# The heat map is built once (T×T rects, labels) and recoloured when the head changes.
_SCRIPT = """
const T = DATA.tokens.length;
const CELL = Math.max(6, Math.min(28, Math.floor(560 / Math.max(T, 1))));
const state = { layer: 0, head: 0 };

// A weight in [0, 1] → white .. dark blue, linearly (so equal steps look equal).
function colour(w) {
  w = Math.max(0, Math.min(1, w));
  const mix = (a, b) => Math.round(a + (b - a) * w);
  return "rgb(" + mix(255, 8) + "," + mix(255, 48) + "," + mix(255, 107) + ")";
}
function el(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  parent.appendChild(e);
  return e;
}
function label(i) { return shown(DATA.tokens[i]) + " [" + i + "]"; }

// The <svg> comes from the markup, so its namespace need not be spelled out (a URL).
const svg = document.getElementById("svgmap"), SVG = svg.namespaceURI;
// Labels first: their measured lengths set the margins (query labels left, key labels
// above, at 60°), up to 200 px; a longer token is cut at the page's edge.
const qLabels = [], kLabels = [];
for (let i = 0; i < T; i++) {
  const q = el("text", { class: "tok q", "text-anchor": "end", "dominant-baseline": "middle",
                         "data-i": i }, svg);
  const k = el("text", { class: "tok k", "data-i": i }, svg);
  q.textContent = k.textContent = shown(DATA.tokens[i]);
  const overQ = (ev) => { showTip(ev, "query " + label(i)); highlight(i, -1); };
  const overK = (ev) => { showTip(ev, "key " + label(i)); highlight(-1, i); };
  for (const t of ["mouseover", "mousemove"]) {
    q.addEventListener(t, overQ);
    k.addEventListener(t, overK);
  }
  qLabels.push(q); kLabels.push(k);
}
const longest = Math.max(0, ...qLabels.map((e) => e.getComputedTextLength()));
const LEFT = Math.ceil(Math.min(200, longest) + 10);
const TOP = Math.ceil(Math.min(200, longest * 0.87) + 14);  // sin 60° of the longest
svg.setAttribute("width", LEFT + T * CELL + 10);
svg.setAttribute("height", TOP + T * CELL + 10);
for (let i = 0; i < T; i++) {
  qLabels[i].setAttribute("x", LEFT - 4);
  qLabels[i].setAttribute("y", TOP + i * CELL + CELL / 2);
  const cx = LEFT + i * CELL + CELL / 2;
  kLabels[i].setAttribute("x", cx);
  kLabels[i].setAttribute("y", TOP - 4);
  kLabels[i].setAttribute("transform", "rotate(-60 " + cx + " " + (TOP - 4) + ")");
}
const cells = [];
for (let q = 0; q < T; q++) {
  const row = [];
  for (let k = 0; k < T; k++) {
    const r = el("rect", { class: "cell", x: LEFT + k * CELL, y: TOP + q * CELL,
                           width: CELL, height: CELL, "data-q": q, "data-k": k }, svg);
    const over = (ev) => {
      const w = DATA.pattern[state.layer][state.head][q][k];
      showTip(ev, label(q) + " \\u2192 " + label(k) + ": " + w.toFixed(4));
      highlight(q, k);
    };
    r.addEventListener("mouseover", over);
    r.addEventListener("mousemove", over);
    row.push(r);
  }
  cells.push(row);
}
const rowHL = el("rect", { class: "hl", x: LEFT, width: T * CELL, height: CELL,
                           visibility: "hidden" }, svg);
const colHL = el("rect", { class: "hl", y: TOP, width: CELL, height: T * CELL,
                           visibility: "hidden" }, svg);
svg.addEventListener("mouseleave", () => { hideTip(); highlight(-1, -1); });

// Query row q and key column k outlined, their labels marked; -1 clears one.
function highlight(q, k) {
  rowHL.setAttribute("visibility", q < 0 ? "hidden" : "visible");
  if (q >= 0) rowHL.setAttribute("y", TOP + q * CELL);
  colHL.setAttribute("visibility", k < 0 ? "hidden" : "visible");
  if (k >= 0) colHL.setAttribute("x", LEFT + k * CELL);
  qLabels.forEach((e, i) => e.classList.toggle("hot", i === q));
  kLabels.forEach((e, i) => e.classList.toggle("hot", i === k));
}

function drawMap() {
  const P = DATA.pattern[state.layer][state.head];
  for (let q = 0; q < T; q++)
    for (let k = 0; k < T; k++) {
      cells[q][k].setAttribute("fill", colour(P[q][k]));
      cells[q][k].setAttribute("data-w", P[q][k]);
    }
  const m = document.getElementById("map");
  m.setAttribute("data-layer", state.layer);
  m.setAttribute("data-head", state.head);
  document.querySelectorAll("button.layer").forEach(
    (b, i) => b.classList.toggle("on", i === state.layer));
  document.querySelectorAll("button.head").forEach(
    (b, i) => b.classList.toggle("on", i === state.head));
}

// A head's thumbnail: one pixel per weight, the same colours as the map.
function drawThumb(canvas, P) {
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(T, T);
  for (let q = 0; q < T; q++)
    for (let k = 0; k < T; k++) {
      const w = Math.max(0, Math.min(1, P[q][k])), o = 4 * (q * T + k);
      img.data[o] = 255 + (8 - 255) * w; img.data[o + 1] = 255 + (48 - 255) * w;
      img.data[o + 2] = 255 + (107 - 255) * w; img.data[o + 3] = 255;
    }
  ctx.putImageData(img, 0, 0);
}

function drawHeads() {
  const box = document.getElementById("heads");
  box.textContent = "";
  DATA.heads.forEach((name, h) => {
    const b = document.createElement("button");
    b.className = "head";
    b.setAttribute("data-head", h);
    const c = document.createElement("canvas");
    c.className = "thumb"; c.width = T; c.height = T;
    drawThumb(c, DATA.pattern[state.layer][h]);
    b.appendChild(c);
    b.appendChild(document.createTextNode(name));
    b.addEventListener("click", () => { state.head = h; drawMap(); });
    box.appendChild(b);
  });
}

if (DATA.layers) {
  const box = document.getElementById("layers");
  DATA.layers.forEach((name, l) => {
    const b = document.createElement("button");
    b.className = "layer";
    b.setAttribute("data-layer", l);
    b.textContent = name;
    b.addEventListener("click", () => { state.layer = l; drawHeads(); drawMap(); });
    box.appendChild(b);
  });
}
drawHeads();
drawMap();
"""
