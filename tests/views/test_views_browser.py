"""The saved views in a real browser: headless chromium loads each file, runs its scripts,
and the test reads the rendered DOM and a screenshot.

Each page is loaded twice: as saved (its DOM dumped, and a screenshot), and with a probe
script appended that reports what the page drew (counts, colours, boxes) and what a hover
or a click does, as JSON in a hidden <pre>. Both loads use the same window, so the probe's
boxes locate the cells in the screenshot. Skipped where chromium is missing; a failure
under CI=true, where .ci/run installs it.
"""

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from jaxformer.views import attention_view, feature_view

WINDOW = (1000, 900)
# hostile tokens: each ends the script, opens a comment, or is an entity, a quote, a line
TOKENS = ["<bos>", "</script>", "a&b", '"q"', "new\nline", "é😀", " the", " cat", "<!--", "'"]
TOKENS += ["</Script ><b>"]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        why = "chromium is not installed: on Debian, apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; under CI=true the browser test must run")
        pytest.skip(why)
    return path


def _run(chromium, tmp_path, page, *args) -> subprocess.CompletedProcess:
    """One headless chromium run on a file: its own profile, a fixed window, scripts given
    2 s of virtual time before the dump or the screenshot."""
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",  # CI runs as root, where chromium's sandbox refuses to start
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=2000",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)


def _dom(chromium, tmp_path, page) -> str:
    return _run(chromium, tmp_path, page, "--dump-dom").stdout


def _screenshot(chromium, tmp_path, page) -> np.ndarray:
    png = tmp_path / f"{page.stem}.png"
    _run(chromium, tmp_path, page, f"--screenshot={png}")
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape == (WINDOW[1], WINDOW[0], 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20, "the screenshot is blank"
    return img


def _probed(chromium, tmp_path, view, probe: str) -> dict:
    """The view with ``probe`` (JS filling an object ``out``) run after its own scripts →
    ``out``, read back from the dumped DOM."""
    script = (
        "<script>(function () { const out = {};\n" + probe + "\n"
        'const pre = document.createElement("pre"); pre.id = "probe";'
        'pre.style.display = "none"; pre.textContent = JSON.stringify(out);'
        "document.body.appendChild(pre); })();</script>"
    )
    page = tmp_path / "probed.html"
    page.write_text(view.html.replace("</body></html>", script + "</body></html>"), "utf-8")
    m = re.search(r'<pre id="probe"[^>]*>(.*?)</pre>', _dom(chromium, tmp_path, page), re.S)
    assert m is not None, "the probe did not run: the page's scripts failed"
    return json.loads(html.unescape(m.group(1)))


def _box_centre(r):
    return int(r[1] + r[3] / 2), int(r[0] + r[2] / 2)  # (row, column) of a [x, y, w, h] box


def test_attention_view_renders(chromium, tmp_path):
    T, L, H = len(TOKENS), 2, 3
    rng = np.random.default_rng(0)
    s = rng.normal(size=(L, H, T, T))
    p = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
    p[0, 0, 7] = np.eye(T)[2]  # the one weight of 1: query " cat" attends to "a&b"
    p = p.astype(np.float32)
    view = attention_view(p, TOKENS, title="heads")
    page = view.save(tmp_path / "attention.html")

    dom = _dom(chromium, tmp_path, page)
    assert len(re.findall(r'<button class="head[^"]*" data-head=', dom)) == H
    assert len(re.findall(r'<button class="layer[^"]*" data-layer=', dom)) == L
    assert len(re.findall(r'<rect class="cell"', dom)) == T * T
    assert len(re.findall(r"<canvas", dom)) == H  # a thumbnail per head
    assert '<div id="tip"' in dom

    out = _probed(
        chromium,
        tmp_path,
        view,
        """
        const cells = [...document.querySelectorAll("rect.cell")];
        const box = (e) => { const r = e.getBoundingClientRect();
                             return [r.x, r.y, r.width, r.height]; };
        out.cells = cells.map((c) => [+c.dataset.q, +c.dataset.k, c.getAttribute("fill"),
                                      +c.dataset.w, box(c)]);
        out.q = [...document.querySelectorAll("text.q")].map((e) => e.textContent);
        out.k = [...document.querySelectorAll("text.k")].map((e) => e.textContent);
        const cell = document.querySelector('rect.cell[data-q="7"][data-k="2"]');
        cell.dispatchEvent(new MouseEvent("mouseover", {bubbles: true, clientX: 50, clientY: 60}));
        out.tip = [tip.textContent, tip.style.display, tip.style.left];
        out.hot = ["q", "k"].map((c) => [...document.querySelectorAll("text.hot." + c)]
                                        .map((e) => +e.dataset.i));
        const lab = document.querySelectorAll("text.q")[4];
        lab.dispatchEvent(new MouseEvent("mouseover", {bubbles: true}));
        out.row = [document.querySelectorAll("rect.hl")[0].getAttribute("visibility"),
                   document.querySelectorAll("rect.hl")[0].getAttribute("y") ===
                   document.querySelector('rect.cell[data-q="4"]').getAttribute("y"),
                   document.querySelectorAll("rect.hl")[1].getAttribute("visibility"),
                   tip.textContent];
        document.querySelectorAll("button.head")[2].click();
        document.querySelectorAll("button.layer")[1].click();
        out.after = [document.getElementById("map").dataset.layer,
                     document.getElementById("map").dataset.head,
                     cells.map((c) => +c.dataset.w),
                     [...document.querySelectorAll("button.on")].map((b) => b.textContent)];
        """,
    )
    shown = [t.replace("\n", "\u21b5") for t in TOKENS]
    assert out["q"] == shown and out["k"] == shown  # hostile tokens render as text
    # the cells hold layer 0, head 0, in order, and darker means larger
    q, k = np.array([c[0] for c in out["cells"]]), np.array([c[1] for c in out["cells"]])
    w = np.float32([c[3] for c in out["cells"]])
    np.testing.assert_array_equal(w, p[0, 0][q, k])
    rgb = np.array([[int(x) for x in re.findall(r"\d+", c[2])] for c in out["cells"]])
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(lum[np.argsort(w, kind="stable")]) <= 1.0)
    # hover: the tooltip names query and key tokens and the weight; their labels marked
    text, display, left = out["tip"]
    assert text == " cat [7] \u2192 a&b [2]: 1.0000" and display == "block" and left == "62px"
    assert out["hot"] == [[7], [2]]
    assert out["row"] == ["visible", True, "hidden", "query new\u21b5line [4]"]
    layer, head, w_after, on = out["after"]
    assert (layer, head) == ("1", "2") and on == ["L1", "H2"]
    np.testing.assert_array_equal(np.float32(w_after), p[1, 2][q, k])

    # the screenshot: each cell's centre pixel is its fill; the darkest is the weight of 1
    img = _screenshot(chromium, tmp_path, page)
    centres = np.array([img[_box_centre(c[4])] for c in out["cells"]])
    assert np.abs(centres - rgb).max() <= 2
    darkest = int(np.argmin(centres @ np.array([0.299, 0.587, 0.114])))
    assert (q[darkest], k[darkest]) == (7, 2)


def test_feature_view_renders(chromium, tmp_path):
    rng = np.random.default_rng(1)
    lengths = [6, 14, 9, 20, 4]
    texts = [[TOKENS[(n + i) % len(TOKENS)] for i in range(T)] for n, T in enumerate(lengths)]
    acts = [rng.normal(size=(T, 3)).astype(np.float32) for T in lengths]
    latent, k, window = 2, 3, 3
    a = [x[:, latent] for x in acts]
    view = feature_view(texts, acts, latent=latent, top_k=k, window=window)
    page = view.save(tmp_path / "features.html")

    # the reference ranking: a stable argsort of the negated maxima
    maxima = np.array([x.max() for x in a])
    order = np.argsort(-maxima, kind="stable")[:k]
    first, peak = int(order[0]), int(np.argmax(a[order[0]]))

    dom = _dom(chromium, tmp_path, page)
    assert re.findall(r'<li class="example[^"]*" data-text="(\d+)"', dom) == [str(n) for n in order]
    assert f'<div id="text" data-text="{first}">' in dom
    assert '<div id="tip"' in dom

    out = _probed(
        chromium,
        tmp_path,
        view,
        """
        const box = (e) => { const r = e.getBoundingClientRect();
                             return [r.x, r.y, r.width, r.height]; };
        out.examples = [...document.querySelectorAll("li.example")].map((li) =>
          [+li.dataset.text, +li.dataset.peak,
           [...li.querySelectorAll(".tok")].map((s) => +s.dataset.i),
           li.querySelector(".tok.peak").dataset.i, li.querySelectorAll(".gap").length]);
        out.text = [...document.querySelectorAll("#text .tok")].map((s) =>
          [s.textContent, +s.dataset.v, getComputedStyle(s).backgroundColor, box(s)]);
        const pk = document.querySelector("#text .tok.peak");
        pk.dispatchEvent(new MouseEvent("mouseover", {bubbles: true, clientX: 5, clientY: 5}));
        out.tip = [tip.textContent, tip.style.display];
        document.querySelectorAll("li.example")[1].click();
        out.clicked = document.getElementById("text").dataset.text;
        const pick = document.getElementById("pick");
        pick.value = "4"; pick.dispatchEvent(new Event("change"));
        out.picked = [document.getElementById("text").dataset.text,
                      document.querySelectorAll("#text .tok").length];
        out.legend = [document.getElementById("lo").textContent,
                      document.getElementById("hi").textContent];
        """,
    )
    # each example: the window around its peak, cut marks where the text goes on
    for (n, pk, idx, marked, gaps), want in zip(out["examples"], order):
        t = int(np.argmax(a[want]))
        lo, hi = max(0, t - window), min(lengths[want], t + window + 1)
        assert (n, pk, idx, int(marked)) == (want, t, list(range(lo, hi)), t)
        assert gaps == (lo > 0) + (hi < lengths[want])
    # the shown text: its tokens, its values, shaded orange ∝ v / max, blue ∝ v / min
    assert [s[0] for s in out["text"]] == [t.replace("\n", "\u21b5") for t in texts[first]]
    v = np.float32([s[1] for s in out["text"]])
    np.testing.assert_array_equal(v, a[first])
    top, bottom = max(x.max() for x in a), min(x.min() for x in a)
    for value, (_, _, bg, _) in zip(v, out["text"]):
        rgba = [float(x) for x in re.findall(r"[\d.]+", bg)]
        alpha = rgba[3] if len(rgba) == 4 else 1.0
        if value > 0:
            assert rgba[:3] == [255, 128, 0] and alpha == pytest.approx(value / top, abs=0.01)
        else:
            assert rgba[:3] == [31, 119, 180] and alpha == pytest.approx(value / bottom, abs=0.01)
    tip_text, display = out["tip"]
    token, value = tip_text.rsplit(": ", 1)
    assert token == f"{texts[first][peak].replace(chr(10), chr(0x21B5))} [{peak}]"
    assert float(value) == pytest.approx(a[first][peak], rel=1e-3) and display == "block"
    assert out["clicked"] == str(order[1])
    assert out["picked"] == ["4", lengths[4]]
    assert [float(x) for x in out["legend"]] == pytest.approx([bottom, top], rel=1e-2)

    # the screenshot: of the shown text's tokens, the peak's box is the most orange
    img = _screenshot(chromium, tmp_path, page)
    orange = []
    for *_, (x, y, w, h) in out["text"]:
        patch = img[int(y) + 1 : int(y + h) - 1, int(x) + 1 : int(x + w) - 1].reshape(-1, 3)
        r, g, b = np.median(patch, axis=0)
        orange.append(r - b)
    assert int(np.argmax(orange)) == peak


def test_two_views_inline_in_one_page(chromium, tmp_path):
    """Two notebook cells' HTML on one page: each iframe runs its own scripts (the same ids,
    no clash), the attention map drawn in the upper one, the shaded tokens in the lower."""
    p = np.full((1, 4, 4), 0.05, np.float32)
    p[0, :, 1] = 0.85
    a = attention_view(p, list("abcd"))
    f = feature_view([list("abcdef")], [np.float32([0, 1, 2, 3, 2, 1])], top_k=1)
    page = tmp_path / "notebook.html"
    page.write_text(f"<html><body>{a._repr_html_()}{f._repr_html_()}</body></html>", "utf-8")
    img = _screenshot(chromium, tmp_path, page)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    blue = np.nonzero((b > r + 60) & (b > 90))[0]  # the heat map's dark cells, head buttons
    orange = np.nonzero((r > 200) & (b < 100) & (g > 80))[0]  # the shaded tokens
    assert blue.size and orange.size, "an inline view did not draw"
    assert blue.max() < orange.min()
