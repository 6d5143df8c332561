"""The page shell: hostile tokens stay data, nothing is fetched, saving is atomic and
checked, and a notebook gets the page inline."""

import html
import json
import re

import numpy as np
import pytest

from jaxformer.views import View, attention_view, feature_view, read_payload
from jaxformer.views.html import payload_json

# Each of these breaks a naive page: ends the script, opens a comment or a tag, ends an
# attribute, is an entity, a line end JS refuses in old parsers, or is outside ASCII.
HOSTILE = [
    "</script>",
    "</SCRIPT ><script>alert(1)</script>",
    "<!--",
    "<b>&amp;",
    '"q"',
    "'",
    "a\nb",
    "\t",
    "\u2028",
    "é 😀 日本",
    "\\",
    "]]>",
]


def _pattern(L, H, T, seed=0):
    """Causal softmax rows [L, H, T, T] from random scores."""
    s = np.random.default_rng(seed).normal(size=(L, H, T, T))
    s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def _views():
    T = len(HOSTILE)
    acts = np.random.default_rng(1).normal(size=(2, T)).astype(np.float32)
    return [
        attention_view(_pattern(2, 3, T), HOSTILE, title="</title><script>x</script>"),
        feature_view([HOSTILE, HOSTILE[::-1]], acts, latent="<i>7</i>"),
    ]


def test_hostile_tokens_stay_data():
    for view in _views():
        page = view.html
        payload = read_payload(page)
        tokens = payload["tokens"] if "tokens" in payload else payload["texts"][0]
        assert tokens == HOSTILE
        # the only script ends are the two the page itself writes (payload, code)
        assert len(re.findall(r"</script", page, re.I)) == 2
        assert "<!--" not in page and "\u2028" not in page
        # the title is escaped text, not markup
        assert "<script>x</script>" not in page and "<i>7</i>" not in page


def test_payload_json_escapes_what_ends_a_script():
    text = payload_json({"s": "</script><!--&\u2028\u2029", "n": [1.5, -0.0]})
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == {"s": "</script><!--&\u2028\u2029", "n": [1.5, -0.0]}
    with pytest.raises(ValueError):
        payload_json({"x": float("nan")})  # JSON has no NaN; the views refuse it earlier


def test_no_external_resources():
    for view in _views():
        page = view.html.lower()
        for needle in ("http:", "https:", "//cdn", "@import", "url(", "<link", "<img", "<iframe"):
            assert needle not in page, needle
        # scripts are inline: no src= anywhere, on any tag
        assert re.search(r"\ssrc\s*=", page) is None
        assert re.search(r"<script(?![^>]*type=\"application/json\")[^>]*>", page) is not None


def test_save_is_atomic_and_read_back(tmp_path):
    view = _views()[0]
    path = view.save(tmp_path / "sub" / "attention.html")
    assert path.read_text(encoding="utf-8") == view.html
    assert [p.name for p in path.parent.iterdir()] == ["attention.html"]  # no temp file left
    View("<p>new</p>").save(path)  # replaces the old file whole
    assert path.read_text() == "<p>new</p>"


def test_repr_html_holds_the_page_in_an_iframe():
    a, f = _views()
    for view in (a, f):
        cell = view._repr_html_()
        m = re.fullmatch(
            r'<iframe srcdoc="([^"]*)" style="[^"]*" sandbox="allow-scripts"></iframe>', cell
        )
        assert m is not None, cell[:200]
        assert html.unescape(m.group(1)) == view.html
    assert repr(a) == f"View('</title><script>x</script>', {len(a.html):,} characters)"
    assert repr(f).startswith("View('latent <i>7</i>'")
