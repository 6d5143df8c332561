"""Interactive views: self-contained HTML pages (no CDN, no network), inline in notebooks.

    attention_view(pattern, tokens) -> View       heads × query × key, hover shows the tokens
    feature_view(texts_tokens, acts, latent=…)    tokens shaded by a latent; its top examples
    View.html, View.save(path), View._repr_html_() the page, a file, a notebook cell

Host code validates every input (shapes, finiteness, one string per token) and puts the
data in the page as JSON; the page's own JavaScript draws it.
"""

from jaxformer.views.attention import attention_view
from jaxformer.views.features import feature_view, top_examples
from jaxformer.views.html import View, read_payload

__all__ = ["View", "attention_view", "feature_view", "read_payload", "top_examples"]
