"""The README's Python examples run as written."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_examples_run(capsys):
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    env: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), env)
    out = capsys.readouterr().out
    assert "cannot compose attn ∘ embed" in out
    assert "(1, 3, 256)" in out
