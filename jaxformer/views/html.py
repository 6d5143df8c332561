"""The page shell shared by the views: one self-contained HTML file, its data as JSON.

    page(title, payload, body, script, style) -> str   a whole document, no external resource
    payload_json(payload) -> str                       JSON safe inside <script> (no "</")
    read_payload(html) -> object                       the payload parsed back out of a page
    View(html, height)                                 .html, .save(path), ._repr_html_()

A view's numbers and tokens travel as JSON in ``<script type="application/json"
id="payload">``, never spliced into markup or code, so a token is data whatever it holds.
"""

from __future__ import annotations

import html as _html
import json
import os
import re
from pathlib import Path

import numpy as np

from jaxformer.atomic import write_atomic

_PAYLOAD = re.compile(r'<script type="application/json" id="payload">(.*?)</script>', re.S)

# The CSS every view shares: a light page, a fixed tooltip that follows the pointer.
BASE_STYLE = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 12px; color: #222; background: #fff; }
h1 { font-size: 15px; margin: 0 0 8px; }
button { font: inherit; margin: 0 4px 4px 0; padding: 2px 6px; border: 1px solid #aaa;
         background: #f4f4f4; border-radius: 3px; cursor: pointer; }
button.on { background: #1f4e99; color: #fff; border-color: #1f4e99; }
#tip { position: fixed; pointer-events: none; background: #222; color: #fff; padding: 2px 6px;
       border-radius: 3px; white-space: pre; display: none; z-index: 10; }
.tok { white-space: pre; }
"""

# JS shared by the views: the payload, the tooltip, and a token made visible (a newline or a
# tab in a label would otherwise vanish or break the layout).
BASE_SCRIPT = """
const DATA = JSON.parse(document.getElementById("payload").textContent);
const tip = document.getElementById("tip");
function showTip(ev, text) {
  tip.textContent = text;
  tip.style.display = "block";
  tip.style.left = (ev.clientX + 12) + "px";
  tip.style.top = (ev.clientY + 12) + "px";
}
function hideTip() { tip.style.display = "none"; }
function shown(tok) {
  return tok.replace(/\\n/g, "\\u21b5").replace(/\\t/g, "\\u21e5").replace(/\\r/g, "\\u240d");
}
"""


def payload_json(payload) -> str:
    """A JSON-able object → JSON text that cannot end the ``<script>`` holding it.

    ``<``, ``>`` and ``&`` occur in JSON only inside strings, where ``\\u003c`` etc. mean
    the same characters; U+2028/9 are escaped for the older parsers that treat them as line
    ends. NaN and ±inf raise (JSON has no such numbers; the views reject them earlier)."""
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def read_payload(page_html: str):
    """A page written by :func:`page` → its payload, parsed (for tests and tools)."""
    m = _PAYLOAD.search(page_html)
    if m is None:
        raise ValueError("no <script id='payload'> in this HTML; give a page made by a view")
    return json.loads(m.group(1))


def numbers(a: np.ndarray) -> list:
    """An array of finite floats → nested lists of float32 values as Python floats.

    Each is the shortest decimal that reads back as the same float32 (``str`` of a
    ``np.float32``), so the page is about half the size of float64 reprs and the payload,
    parsed as float32, is the input exactly."""
    a32 = np.asarray(a, dtype=np.float32)
    flat = [float(str(x)) for x in a32.ravel()]
    return np.array(flat, dtype=object).reshape(a32.shape).tolist() if a32.ndim else flat[0]


def real_float32(name: str, a: np.ndarray) -> np.ndarray:
    """A real array of any float or int dtype (bfloat16 included) → float32; refuse complex,
    boolean, string or object arrays, naming ``name``."""
    if a.dtype.kind in "bcOSUMmV" and a.dtype.name != "bfloat16":
        raise ValueError(f"{name} has dtype {a.dtype}; give real numbers (a float array)")
    return a.astype(np.float32)


def check_finite(name: str, a: np.ndarray) -> None:
    """Refuse NaN or ±inf in ``a``, naming the first one."""
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}{list(where)} is {a[where]}; give finite values (mask or drop that entry)"
        )


def check_tokens(name: str, tokens) -> list[str]:
    """A sequence of token strings → a list; refuse ids or other non-strings, naming one."""
    if isinstance(tokens, str):
        raise ValueError(f"{name} is one string; give a list with one string per token")
    tokens = list(tokens)
    for i, t in enumerate(tokens):
        if not isinstance(t, str):
            raise ValueError(
                f"{name}[{i}] is {type(t).__name__} {t!r}; give token strings "
                "(e.g. [tokenizer.decode([i]) for i in ids])"
            )
    return tokens


def page(title: str, payload, body: str, script: str, style: str = "") -> str:
    """A title, a JSON-able payload, body markup, the view's JS and CSS → a whole HTML page.

    Everything is inline: no URL, no font, no import, so the file opens offline and the
    same string serves a saved file and a notebook cell."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>{_html.escape(title)}</title>\n"
        f"<style>{BASE_STYLE}{style}</style></head>\n"
        f'<body><h1>{_html.escape(title)}</h1>\n{body}\n<div id="tip"></div>\n'
        f'<script type="application/json" id="payload">{payload_json(payload)}</script>\n'
        f"<script>{BASE_SCRIPT}{script}</script>\n"
        "</body></html>\n"
    )


class View:
    """A rendered view: ``.html`` the page, ``.save(path)`` a file, inline in notebooks.

    In a notebook the page sits in an iframe (``srcdoc``), so two views in one notebook
    keep their own ids, styles and scripts."""

    def __init__(self, html: str, height: int = 600):
        self.html = html
        self.height = int(height)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` atomically (temp file, fsync, rename), read it back
        and compare; → the path."""
        path = Path(path)
        data = self.html.encode("utf-8")
        write_atomic(path, data)
        if path.read_bytes() != data:  # a full disk or a racing writer: say so, now
            raise OSError(f"{path} does not read back as written; check the disk and rewrite")
        return path

    def _repr_html_(self) -> str:
        """The page in a sandboxed iframe: scripts run, nothing leaks into the notebook."""
        return (
            f'<iframe srcdoc="{_html.escape(self.html, quote=True)}" '
            f'style="width:100%;height:{self.height}px;border:0" '
            'sandbox="allow-scripts"></iframe>'
        )

    def __repr__(self) -> str:
        m = re.search(r"<title>(.*?)</title>", self.html, re.S)
        name = _html.unescape(m.group(1)) if m else "?"
        return f"View({name!r}, {len(self.html):,} characters)"
