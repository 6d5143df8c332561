"""scripts/device_check.py, the GPU check, stays runnable between the sessions that have a GPU:
its dry run (a tiny shape) prints the table on this CPU, and the MFU it prints is the
tokens/s times the FLOPs per token over the peak it names."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_dry_run_prints_the_table(tmp_path):
    out = tmp_path / "table.json"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "scripts/device_check.py", "--dry-run", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(out.read_text())
    for key in rows:
        assert f"| {key}" in run.stdout
    assert rows["device"] == "cpu" and rows["attention"] == "chunked"
    assert rows["train tokens/s"] > 0 and rows["decode tokens/s, batch 8"] > 0
    mfu = rows["train tokens/s"] * rows["model FLOPs per token (train, describe)"]
    printed = float(rows["train MFU"].split("%")[0]) / 100
    assert abs(printed - mfu / rows["peak FLOP/s"]) < 1e-3, (printed, mfu, rows)
