"""The feature-activation view: a latent's activation shading the tokens of texts.

    feature_view(texts_tokens, acts, latent=...) -> View     acts per text [T] or [T, F]
    top_examples(acts, k) -> [(text, peak, max)]             the k texts of largest max

The page lists the top examples, each as the context around its peak token, and shows
one whole text (the top one, or any picked by number or by clicking an example), every
token shaded by its activation on one colour scale with a legend; hovering a token shows
its value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxformer.views.html import View, check_finite, check_tokens, numbers, page, real_float32


def top_examples(acts: Sequence[np.ndarray], k: int) -> list[tuple[int, int, float]]:
    """Per-text activations (each [T_n], T_n ≥ 1) → the k texts with the largest maximum,
    as (text index, position of its first maximum, maximum), largest first; ties go to
    the earlier text."""
    peaks = [(int(np.argmax(a)), float(np.max(a))) for a in acts]
    order = sorted(range(len(peaks)), key=lambda n: (-peaks[n][1], n))
    return [(n, *peaks[n]) for n in order[:k]]


def _per_text(acts, n_texts: int) -> list[np.ndarray]:
    """An array [N, T(, F)] or a sequence of N arrays → a list of N float32 arrays."""
    if hasattr(acts, "__array__"):  # numpy or jax: its first axis is the texts
        acts = list(np.asarray(acts))
    acts = [real_float32(f"acts[{n}]", np.asarray(a)) for n, a in enumerate(acts)]
    if len(acts) != n_texts:
        raise ValueError(
            f"acts holds {len(acts)} texts but texts_tokens holds {n_texts}; give one "
            "activation array per text"
        )
    return acts


def _one_latent(acts: list[np.ndarray], latent) -> list[np.ndarray]:
    """Per-text activations [T_n] or [T_n, F] → [T_n] of the chosen latent."""
    ndims = {a.ndim for a in acts}
    if ndims == {1}:
        return acts
    if ndims != {2}:
        raise ValueError(
            f"acts have {sorted(ndims)} dimensions; give each text's activations as [T] "
            "(one latent) or [T, F] (all latents, with latent=index)"
        )
    F = acts[0].shape[1]
    if any(a.shape[1] != F for a in acts):
        raise ValueError("acts have different numbers of latents; give [T_n, F] with one F")
    if not isinstance(latent, int | np.integer) or not 0 <= latent < F:
        raise ValueError(
            f"latent={latent!r} but acts hold F={F} latents; give latent=an index in [0, {F})"
        )
    return [a[:, int(latent)] for a in acts]


def feature_view(
    texts_tokens: Sequence[Sequence[str]],
    acts,
    *,
    latent: int | str | None = None,
    top_k: int = 10,
    window: int = 8,
    title: str | None = None,
) -> View:
    """N texts' tokens and their activations → an interactive :class:`View` of one latent.

    ``acts`` is a sequence of N arrays, one per text: [T_n] (this latent's activations;
    ``latent`` then only names it) or [T_n, F] (all F latents, e.g. an SAE's codes;
    ``latent`` the index shown); or one array [N, T] or [N, T, F] when all texts have T
    tokens. ``top_k`` examples are listed, each with ``window`` tokens either side of its
    peak."""
    texts = [check_tokens(f"texts_tokens[{n}]", t) for n, t in enumerate(texts_tokens)]
    if not texts:
        raise ValueError("texts_tokens is empty; give at least one text")
    if not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ValueError(f"top_k={top_k!r}; give a positive number of examples")
    if not isinstance(window, int | np.integer) or window < 0:
        raise ValueError(f"window={window!r}; give the tokens to show each side, ≥ 0")
    a = _one_latent(_per_text(acts, len(texts)), latent)
    for n, (toks, v) in enumerate(zip(texts, a)):
        if not toks:
            raise ValueError(f"texts_tokens[{n}] is empty; drop the empty texts")
        if v.shape[0] != len(toks):
            raise ValueError(
                f"acts[{n}] has {v.shape[0]} positions but texts_tokens[{n}] has {len(toks)} "
                "tokens; give one activation per token"
            )
        check_finite(f"acts[{n}]", v)
    lo = min(0.0, min(float(v.min()) for v in a))
    hi = max(0.0, max(float(v.max()) for v in a))
    top = top_examples(a, int(top_k))
    payload = {
        "latent": None if latent is None else str(latent),
        "texts": texts,
        "acts": [numbers(v) for v in a],
        "top": [{"text": n, "peak": t, "max": numbers(np.float32(m))} for n, t, m in top],
        "window": int(window),
        "scale": {"lo": numbers(np.float32(lo)), "hi": numbers(np.float32(hi))},
    }
    if title is None:
        title = "feature activations" if latent is None else f"latent {latent}"
    longest = max(len(t) for t in texts)
    height = 260 + 26 * len(top) + 22 * (longest // 12 + 1)  # ~12 tokens a line
    return View(page(title, payload, _BODY, _SCRIPT, _STYLE), height=min(height, 1200))


_STYLE = """
h2 { font-size: 13px; margin: 12px 0 4px; }
#legend { display: flex; align-items: center; gap: 6px; }
#legend .bar { width: 180px; height: 10px; border: 1px solid #ccc; }
#top { margin: 0; padding-left: 28px; }
li.example { cursor: pointer; padding: 1px 0; }
li.example.on { background: #eef3fb; }
li.example .max { display: inline-block; min-width: 70px; color: #555; }
.tok { border-radius: 2px; padding: 0 1px; }
.tok.peak { outline: 1.5px solid #c0392b; }
.gap { color: #999; }
#text { line-height: 1.9; max-width: 900px; word-wrap: break-word; }
input#pick { width: 70px; font: inherit; }
"""

_BODY = """
<div id="legend"><span id="lo"></span><span class="bar"></span><span id="hi"></span></div>
<h2>Top examples (by the largest activation in each text)</h2>
<ol id="top"></ol>
<h2>Text <input id="pick" type="number" min="0" step="1"> <span id="count"></span></h2>
<div id="text"></div>
"""

# One colour scale for the whole page: 0 is transparent, positive orange, negative blue,
# each in proportion to the largest magnitude on its side.
_SCRIPT = """
const LO = DATA.scale.lo, HI = DATA.scale.hi;
function shade(v) {
  if (v > 0 && HI > 0) return "rgba(255,128,0," + (v / HI).toFixed(4) + ")";
  if (v < 0 && LO < 0) return "rgba(31,119,180," + (v / LO).toFixed(4) + ")";
  return "rgba(255,128,0,0)";
}
function tokenSpan(n, i, peak) {
  const s = document.createElement("span"), v = DATA.acts[n][i];
  s.className = i === peak ? "tok peak" : "tok";
  s.textContent = shown(DATA.texts[n][i]);
  s.style.backgroundColor = shade(v);
  s.setAttribute("data-i", i);
  s.setAttribute("data-v", v);
  const over = (ev) => showTip(ev, shown(DATA.texts[n][i]) + " [" + i + "]: " + v.toPrecision(4));
  s.addEventListener("mouseover", over);
  s.addEventListener("mousemove", over);
  s.addEventListener("mouseleave", hideTip);
  return s;
}
function gap(parent) {
  const g = document.createElement("span");
  g.className = "gap"; g.textContent = "\\u2026"; parent.appendChild(g);
}

const lo = document.getElementById("lo"), hi = document.getElementById("hi");
lo.textContent = LO.toPrecision(3); hi.textContent = HI.toPrecision(3);
document.querySelector("#legend .bar").style.background = LO < 0
  ? "linear-gradient(to right, rgb(31,119,180), rgba(255,255,255,0), rgb(255,128,0))"
  : "linear-gradient(to right, rgba(255,128,0,0), rgb(255,128,0))";

function showText(n, peak) {
  const box = document.getElementById("text");
  box.textContent = "";
  box.setAttribute("data-text", n);
  for (let i = 0; i < DATA.texts[n].length; i++) box.appendChild(tokenSpan(n, i, peak));
  document.getElementById("pick").value = n;
  document.querySelectorAll("li.example").forEach(
    (li) => li.classList.toggle("on", +li.getAttribute("data-text") === n));
}

const list = document.getElementById("top");
DATA.top.forEach((ex) => {
  const li = document.createElement("li"), W = DATA.window;
  li.className = "example";
  li.setAttribute("data-text", ex.text);
  li.setAttribute("data-peak", ex.peak);
  const m = document.createElement("span");
  m.className = "max"; m.textContent = ex.max.toPrecision(4);
  li.appendChild(m);
  const ctx = document.createElement("span");
  ctx.className = "ctx";
  const a = Math.max(0, ex.peak - W), b = Math.min(DATA.texts[ex.text].length, ex.peak + W + 1);
  if (a > 0) gap(ctx);
  for (let i = a; i < b; i++) ctx.appendChild(tokenSpan(ex.text, i, ex.peak));
  if (b < DATA.texts[ex.text].length) gap(ctx);
  li.appendChild(ctx);
  li.addEventListener("click", () => showText(ex.text, ex.peak));
  list.appendChild(li);
});

const pick = document.getElementById("pick");
pick.max = DATA.texts.length - 1;
document.getElementById("count").textContent = "of " + DATA.texts.length;
pick.addEventListener("change", () => {
  const n = Math.max(0, Math.min(DATA.texts.length - 1, Math.round(+pick.value || 0)));
  const peak = DATA.acts[n].indexOf(Math.max(...DATA.acts[n]));
  showText(n, peak);
});
showText(DATA.top[0].text, DATA.top[0].peak);
"""
